// cli_commands.hpp: the commands of the couplevae tool that run a model (train, eval,
// sample, interpolate), as templates on the backend B. couplevae_cli.cpp instantiates them
// for cpu; cli_cuda.cu, compiled by nvcc when the project is configured with
// COUPLEVAE_WITH_CUDA=ON, for cuda (the tool's --backend cuda).
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <iostream>
#include <sstream>

#include <couplevae/couplevae.hpp>

#include "cli_args.hpp"

namespace couplevae::cli {

template <class B>
int run_train(const TrainArgs& a) {
  // Every value is checked before the folder or the corpus is touched (the vocabulary
  // size is not known yet: any valid one will do).
  TrainOptions o = train_options(a);
  const Config checked = train_config(a, 5);
  prepare_out_dir(o);  // refuse a used or unwritable --out before any work
  CorpusOptions co;
  co.drop_label = checked.drop_label;
  co.max_len = checked.max_len;
  Dataset data = load_dataset(a.data, co);
  const Config cfg = train_config(a, int(data.vocab.size()));
  if (!a.resume.empty()) {  // refuse a wrong checkpoint before any output or work
    const CheckpointInfo info = read_checkpoint_info(a.resume);
    require(info.model == a.model, "checkpoint " + a.resume + ": it holds a '" + info.model + "' run, not '" + a.model + "'");
    require(info.vocab == data.vocab, "checkpoint " + a.resume + ": its vocabulary differs from the one built from " +
                                          a.data + "/train.txt; resume with the same training corpus");
  }
  std::cerr << "couplevae train: " << a.model << " on " << a.data << " (" << data.train.size() << " train, "
            << data.valid.size() << " valid sentences, vocabulary " << cfg.vocab_size << ")\n";
  return with_model(a.model, [&]<class M0>() {
    using M = with_backend_t<M0, B>;
    M model(cfg, a.seed);
    std::cerr << "parameters: " << model.arena().count() << "\n";
    o.steps = cfg.steps;
    const TrainResult r = train(model, data, o);
    std::printf("trained %s for %ld steps in %.1f s; best validation NLL %.3f at step %ld\n", a.model.c_str(), r.steps,
                r.seconds, r.best_valid, r.best_step);
    return 0;
  });
}

// A progress printer for long evaluations (stderr, at most every 2 s).
inline std::function<void(size_t, size_t)> progress_printer(const std::string& what) {
  auto t0 = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(*t0);
  return [=](size_t done, size_t all) {
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - *last).count() > 2 || done == all) {
      *last = now;
      const double el = std::chrono::duration<double>(now - *t0).count();
      std::fprintf(stderr, "\r%s %zu/%zu, %.1f s", what.c_str(), done, all, el);
      if (done == all) std::fprintf(stderr, "\n");
    }
  };
}

// Which metrics apply to a model (the rest are left out of the output, never set to 0).
template <class M>
bool metric_applies(const std::string& m) {
  constexpr bool latent = M::has_latent;
  constexpr bool stochastic = detail::has_likelihood<M>() && latent;
  if (m == "nll") return true;
  // SA-VAE's posterior is refined per sentence: the encoder-based analyses do not describe it.
  if constexpr (requires { M::is_semi_amortized; }) return m == "dist";
  if (m == "mi") return stochastic;
  if (m == "bleu") return latent;
  if (m == "dist") return stochastic || !latent;  // the LM samples too; the DAE has no prior
  if (m == "grad") return latent;
  return false;
}

template <class M>
std::vector<std::vector<int32_t>> prior_samples(M& model, Context<typename M::backend>& ctx, int n, int max_len, double temperature) {
  if constexpr (M::has_latent)
    return model.sample_prior(ctx, n, max_len, temperature);
  else
    return model.decode(ctx, n, max_len, temperature);
}

template <class B>
int run_eval(const EvalArgs& a) {
  const std::vector<std::string> wanted = eval_metrics(a);
  if (!a.json_out.empty()) {
    // Refuse an impossible --json-out before a long evaluation.
    std::error_code ec;
    const auto parent = std::filesystem::absolute(a.json_out).parent_path();
    require(std::filesystem::is_directory(parent, ec), "--json-out " + a.json_out + ": the folder does not exist");
    require(!std::filesystem::is_directory(a.json_out, ec), "--json-out " + a.json_out + ": is a folder");
  }
  const CheckpointInfo info = read_checkpoint_info(a.checkpoint);
  Config cfg = info.config;
  if (a.eval_batch_size > 0) cfg.eval_batch_size = a.eval_batch_size;
  if (a.eval_rows > 0) cfg.eval_rows = a.eval_rows;
  CorpusOptions co;
  co.drop_label = info.config.drop_label;
  co.max_len = info.config.max_len;
  const std::string path = a.data + "/" + a.split + ".txt";
  const auto sentences = info.vocab.encode_all(read_corpus(path, co));
  return with_model(info.model, [&]<class M0>() {
    using M = with_backend_t<M0, B>;
    M model(cfg, 0);
    load_checkpoint(a.checkpoint, model);
    std::vector<std::string> metrics;
    for (const auto& m : wanted.empty() ? all_metrics : wanted) {
      if (metric_applies<M>(m))
        metrics.push_back(m);
      else if (!wanted.empty())
        std::fprintf(stderr, "couplevae: note: metric '%s' does not apply to '%s'; left out\n", m.c_str(),
                     info.model.c_str());
    }
    auto has = [&](const char* m) { return std::find(metrics.begin(), metrics.end(), m) != metrics.end(); };
    const size_t limit = a.max_sentences > 0 ? size_t(a.max_sentences) : sentences.size();
    const size_t used = std::min(limit, sentences.size());
    nlohmann::json j = {{"model", info.model}, {"split", a.split}, {"sentences", long(used)}};
    std::printf("%s %s (%zu sentences):", info.model.c_str(), a.split.c_str(), used);
    if (has("nll")) {
      const NllReport r = evaluate_nll(model, sentences, a.samples, a.seed, limit, cfg.eval_batch(),
                                       progress_printer("nll: sentences"));
      if (r.has_nll) j["nll"] = r.nll, j["ppl"] = r.ppl;
      if (r.has_nll && M::has_latent) j["kl"] = r.kl;
      j["rec"] = r.rec;
      if (r.has_rec_c) j["rec_c"] = r.rec_c;
      j["tokens"] = r.tokens;
      j["samples"] = r.samples;
      if (r.has_nll) std::printf(" nll %.3f ppl %.3f", r.nll, r.ppl);
      if (r.has_nll && M::has_latent) std::printf(" kl %.3f", r.kl);
      std::printf(" rec %.3f", r.rec);
      if (r.has_rec_c) std::printf(" rec_c %.3f", r.rec_c);
    }
    if constexpr (M::has_latent) {
      if (has("mi")) {
        if constexpr (detail::has_likelihood<M>()) {
          const double mi = evaluate_mi(model, sentences, a.mi_samples, 513, a.seed, limit, progress_printer("mi: sentences"));
          j["mi"] = mi;
          std::printf(" mi %.3f", mi);
        }
      }
      if (has("bleu")) {
        std::vector<std::vector<int32_t>> hyps, refs(sentences.begin(), sentences.begin() + long(used));
        auto prog = progress_printer("bleu: sentences");
        for (const Batch& b : sequential_batches(sentences, cfg.eval_batch(), info.config.vocab_size, limit)) {
          // The same key for every batch; each sentence's samples are named by its index.
          Context<B> ctx(a.seed + 1, false);
          auto out = model.reconstruct(ctx, b, a.bleu_samples, 200, long(hyps.size()) / a.bleu_samples);
          for (auto& o : out) hyps.push_back(std::move(o));
          prog(hyps.size() / size_t(a.bleu_samples), used);
        }
        const BleuScore s = reconstruction_bleu(hyps, refs);
        j["bleu1"] = s.bleu1_pct(), j["bleu2"] = s.bleu2_pct();
        j["bleu1_paper"] = s.bleu1_paper_pct(), j["bleu2_paper"] = s.bleu2_paper_pct();
        std::printf(" bleu1 %.2f bleu2 %.2f (paper's BP*p_n: %.2f / %.2f)", s.bleu1_pct(), s.bleu2_pct(),
                    s.bleu1_paper_pct(), s.bleu2_paper_pct());
      }
      if (has("grad")) {
        const GradNormReport g = evaluate_grad_norms(model, sentences, a.seed + 2, limit, 16, progress_printer("grad: sentences"));
        for (const auto& [k, v] : g.values) j[k] = v;
        std::printf(" grad_rec %.3g grad_h %.3g", g.values.at("grad_rec"), g.values.at("grad_h"));
      }
    }
    if (has("dist")) {
      Context<B> ctx(a.seed + 3, false);
      std::vector<std::vector<int32_t>> all;
      auto prog = progress_printer("dist: samples");
      for (int done = 0; done < a.dist_samples; done += 32) {
        auto out = prior_samples(model, ctx, std::min(32, a.dist_samples - done), 200, 0.0);
        for (auto& o : out) all.push_back(std::move(o));
        prog(all.size(), size_t(a.dist_samples));
      }
      const DistScore d = dist_scores(all);
      j["dist1"] = d.dist1, j["dist2"] = d.dist2;
      std::printf(" dist1 %.4f dist2 %.4f", d.dist1, d.dist2);
    }
    std::printf("\n");
    if (a.json) std::printf("%s\n", j.dump().c_str());
    if (!a.json_out.empty()) {
      detail::write_bytes_atomic(a.json_out, j.dump(2) + "\n", "--json-out");
      std::fprintf(stderr, "wrote %s\n", a.json_out.c_str());
    }
    return 0;
  });
}

// Reads a checkpoint's model for generation.
template <class B, class F>
int with_checkpoint(const std::string& file, F&& f) {
  const CheckpointInfo info = read_checkpoint_info(file);
  return with_model(info.model, [&]<class M0>() {
    using M = with_backend_t<M0, B>;
    M model(info.config, 0);
    load_checkpoint(file, model);
    return f.template operator()<M>(model, info);
  });
}

template <class B>
int run_sample(const SampleArgs& a) {
  check_sample_args(a);
  const int n = a.n, max_len = a.max_len;
  const double temperature = a.temperature;
  const uint64_t seed = a.seed;
  return with_checkpoint<B>(a.checkpoint, [&]<class M>(M& model, const CheckpointInfo& info) {
    if constexpr (M::has_latent && !detail::has_likelihood<M>()) {
      throw Error("sample: '" + info.model + "' has no prior to sample from (the DAE)");
    } else {
      Context<B> ctx(seed, false);
      for (int done = 0; done < n; done += 32)
        for (const auto& s : prior_samples(model, ctx, std::min(32, n - done), max_len, temperature))
          std::printf("%s\n", info.vocab.decode(s).c_str());
    }
    return 0;
  });
}

template <class B>
int run_interpolate(const InterpolateArgs& a, int max_len) {
  const std::string &sa = a.a, &sb = a.b;
  return with_checkpoint<B>(a.checkpoint, [&]<class M>(M& model, const CheckpointInfo& info) {
    if constexpr (!M::has_latent) {
      throw Error("interpolate: '" + info.model + "' has no latent space");
    } else {
      std::vector<std::vector<int32_t>> pair;
      for (const std::string* text : {&sa, &sb}) {
        std::istringstream in(*text);
        std::vector<std::string> words;
        for (std::string w; in >> w;) words.push_back(w);
        require(!words.empty(), "interpolate: --a and --b must be non-empty sentences");
        pair.push_back(info.vocab.encode(words));
        std::string unknown;  // words outside the checkpoint's vocabulary, read as <unk>
        int n_unknown = 0;
        for (size_t i = 0; i < words.size(); ++i)
          if (pair.back()[i] == unk_id && words[i] != "<unk>") unknown += (n_unknown++ ? ", " : "") + words[i];
        if (n_unknown)
          std::fprintf(stderr, "interpolate: %d of %zu words are not in the vocabulary and read as <unk>: %s\n",
                       n_unknown, words.size(), unknown.c_str());
      }
      Context<B> ctx(0, false);
      const Batch b = make_batch(pair, info.config.vocab_size);
      const auto mu = model.posterior_means(ctx, b);
      const int Z = info.config.latent;
      // 7 points at weights (1 - k/6, k/6), k = 0..6 (reference.md §13).
      std::vector<float> codes(size_t(7) * Z);
      for (int k = 0; k <= 6; ++k)
        for (int d = 0; d < Z; ++d) codes[size_t(k) * Z + d] = float((1 - k / 6.0) * mu[d] + k / 6.0 * mu[size_t(Z) + d]);
      Buffer<float, B> zb;
      zb.from_host(codes.data(), codes.size());
      for (const auto& s : model.decode_codes(ctx, View<float>{zb.data(), 7, Z}, max_len, 0.0))
        std::printf("%s\n", info.vocab.decode(s).c_str());
    }
    return 0;
  });
}

}  // namespace couplevae::cli
