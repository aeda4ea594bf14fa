// couplevae: the command-line tool (an example program built with the project).
//
//   couplevae train --model NAME --data DIR [--preset ptb|yelp|yahoo] [--steps N]
//                   [--seed S] [--out DIR] [--lambda-c X] [--resume FILE] [--overwrite]
//                   [--track-every K] [--track-sentences N] ...
//   couplevae eval  --checkpoint FILE --data DIR [--split test] [--samples N]
//                   [--max-sentences M] [--metrics nll] [--json] [--json-out FILE]
//   couplevae report --runs DIR... [--out FILE.md] [--plot FILE.svg] [--squared]
//   couplevae make-corpus --out DIR [--seed S]      (the toy corpus of the quick start)
//
// Errors (bad flags, bad values, bad files) print one line and exit with code 2.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <iostream>
#include <sstream>

#include <couplevae/couplevae.hpp>
#include <couplevae/eval/dynamics.hpp>
#include <couplevae/eval/report.hpp>

using namespace couplevae;

namespace {

struct TrainArgs {
  std::string model, data, preset = "ptb", out, resume, coupling;
  double beta = 0;
  int cnn_channels = 0;
  std::vector<int> dilations;
  long steps = -1;
  uint64_t seed = 0;
  double lambda_c = -1;
  int embed = 0, hidden = 0, latent = 0, batch_size = 0, valid_every = 0, kl_start = -1, kl_anneal_steps = 0,
      log_every = 100;
  long valid_max_sentences = -1;
  bool overwrite = false;
  long track_every = 0, track_sentences = 200;
  // Flags given on the command line are applied whatever their value, so impossible
  // values reach Config::validate and fail there instead of being ignored.
  CLI::App* cmd = nullptr;
  bool given(const char* flag) const { return cmd && cmd->count(flag) > 0; }
};

struct EvalArgs {
  std::string checkpoint, data, split = "test", metrics, json_out;
  int samples = 100, mi_samples = 100, bleu_samples = 10, dist_samples = 3200;
  long max_sentences = -1;
  uint64_t seed = 0;
  bool json = false;
};

int run_train(const TrainArgs& a) {
  Config cfg = model_config(a.model, a.preset);
  if (a.given("--lambda-c")) cfg.lambda_c = a.lambda_c;
  if (!a.coupling.empty()) cfg.coupling = a.coupling;
  if (a.given("--beta")) cfg.beta = a.beta;
  if (a.given("--cnn-channels")) cfg.cnn_channels = a.cnn_channels;
  if (!a.dilations.empty()) cfg.cnn_dilations = a.dilations;
  if (a.given("--embed")) cfg.embed = a.embed;
  if (a.given("--hidden")) cfg.hidden = a.hidden;
  if (a.given("--latent")) cfg.latent = a.latent;
  if (a.given("--batch-size")) cfg.batch_size = a.batch_size;
  if (a.given("--valid-every")) cfg.valid_every = a.valid_every;
  if (a.given("--kl-start")) cfg.kl_start = a.kl_start;
  if (a.given("--kl-anneal-steps")) cfg.kl_anneal_steps = a.kl_anneal_steps;
  if (a.given("--steps")) cfg.steps = a.steps;
  require(cfg.steps >= 1, "--steps must be >= 1");
  require(a.track_every >= 0, "--track-every must be >= 0 (0: no tracking)");
  require(a.track_sentences >= 1, "--track-sentences must be >= 1");
  TrainOptions o;
  o.out_dir = a.out;
  o.resume = a.resume;
  o.overwrite = a.overwrite;
  prepare_out_dir(o);  // refuse a used or unwritable --out before any work
  CorpusOptions co;
  co.drop_label = cfg.drop_label;
  co.max_len = cfg.max_len;
  Dataset data = load_dataset(a.data, co);
  cfg.vocab_size = int(data.vocab.size());
  cfg.validate();
  if (!a.resume.empty()) {  // refuse a wrong checkpoint before any output or work
    const CheckpointInfo info = read_checkpoint_info(a.resume);
    require(info.model == a.model, "checkpoint " + a.resume + ": it holds a '" + info.model + "' run, not '" + a.model + "'");
    require(info.vocab == data.vocab, "checkpoint " + a.resume + ": its vocabulary differs from the one built from " +
                                          a.data + "/train.txt; resume with the same training corpus");
  }
  std::cerr << "couplevae train: " << a.model << " on " << a.data << " (" << data.train.size() << " train, "
            << data.valid.size() << " valid sentences, vocabulary " << cfg.vocab_size << ")\n";
  return with_model(a.model, [&]<class M>() {
    M model(cfg, a.seed);
    std::cerr << "parameters: " << model.arena().count() << "\n";
    o.model_name = a.model;
    o.seed = a.seed;
    o.steps = cfg.steps;
    o.log_every = a.log_every;
    require(!a.given("--valid-max-sentences") || a.valid_max_sentences > 0, "--valid-max-sentences must be >= 1");
  if (a.valid_max_sentences > 0) o.valid_max_sentences = size_t(a.valid_max_sentences);
    o.track_every = a.track_every;
    o.track_sentences = size_t(a.track_sentences);
    const TrainResult r = train(model, data, o);
    std::printf("trained %s for %ld steps in %.1f s; best validation NLL %.3f at step %ld\n", a.model.c_str(), r.steps,
                r.seconds, r.best_valid, r.best_step);
    return 0;
  });
}

// A progress printer for long evaluations (stderr, at most every 2 s).
std::function<void(size_t, size_t)> progress_printer(const std::string& what) {
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

const std::vector<std::string> all_metrics = {"nll", "mi", "bleu", "dist", "grad"};

// Which metrics apply to a model (the rest are left out of the output, never set to 0).
template <class M>
bool metric_applies(const std::string& m) {
  constexpr bool latent = M::has_latent;
  constexpr bool stochastic = detail::has_likelihood<M>() && latent;
  if (m == "nll") return true;
  if (m == "mi") return stochastic;
  if (m == "bleu") return latent;
  if (m == "dist") return stochastic || !latent;  // the LM samples too; the DAE has no prior
  if (m == "grad") return latent;
  return false;
}

template <class M>
std::vector<std::vector<int32_t>> prior_samples(M& model, Context<cpu>& ctx, int n, int max_len, double temperature) {
  if constexpr (M::has_latent)
    return model.sample_prior(ctx, n, max_len, temperature);
  else
    return model.decode(ctx, n, max_len, temperature);
}

int run_eval(const EvalArgs& a) {
  require(a.samples >= 1, "--samples must be >= 1");
  require(a.bleu_samples >= 1, "--bleu-samples must be >= 1");
  require(a.dist_samples >= 1, "--dist-samples must be >= 1");
  require(a.split == "train" || a.split == "valid" || a.split == "test",
          "--split must be train, valid or test (got '" + a.split + "')");
  std::vector<std::string> wanted;
  if (!a.metrics.empty()) {
    std::stringstream ms(a.metrics);
    for (std::string m; std::getline(ms, m, ',');) {
      require(std::find(all_metrics.begin(), all_metrics.end(), m) != all_metrics.end(),
              "--metrics: unknown metric '" + m + "' (available: nll, mi, bleu, dist, grad)");
      wanted.push_back(m);
    }
  }
  if (!a.json_out.empty()) {
    // Refuse an impossible --json-out before a long evaluation.
    std::error_code ec;
    const auto parent = std::filesystem::absolute(a.json_out).parent_path();
    require(std::filesystem::is_directory(parent, ec), "--json-out " + a.json_out + ": the folder does not exist");
    require(!std::filesystem::is_directory(a.json_out, ec), "--json-out " + a.json_out + ": is a folder");
  }
  const CheckpointInfo info = read_checkpoint_info(a.checkpoint);
  CorpusOptions co;
  co.drop_label = info.config.drop_label;
  co.max_len = info.config.max_len;
  const std::string path = a.data + "/" + a.split + ".txt";
  const auto sentences = info.vocab.encode_all(read_corpus(path, co));
  return with_model(info.model, [&]<class M>() {
    M model(info.config, 0);
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
      const NllReport r = evaluate_nll(model, sentences, a.samples, a.seed, limit, info.config.batch_size,
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
        Context<cpu> ctx(a.seed + 1, false);
        std::vector<std::vector<int32_t>> hyps, refs(sentences.begin(), sentences.begin() + long(used));
        auto prog = progress_printer("bleu: sentences");
        for (const Batch& b : sequential_batches(sentences, info.config.batch_size, info.config.vocab_size, limit)) {
          auto out = model.reconstruct(ctx, b, a.bleu_samples);
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
      Context<cpu> ctx(a.seed + 3, false);
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

int run_report(const std::vector<std::string>& dirs, const std::string& out, std::string plot, bool squared) {
  namespace fs = std::filesystem;
  require(!out.empty(), "--out must not be empty");
  if (plot.empty()) plot = out == "-" ? "report.svg" : fs::path(out).replace_extension(".svg").string();
  require(out == "-" || fs::absolute(plot) != fs::absolute(out), "--plot and --out name the same file");
  const ReportFiles r = write_report(dirs, out, plot, squared);
  FILE* notes = out == "-" ? stderr : stdout;
  if (out == "-")
    std::fputs(r.markdown.c_str(), stdout);
  else
    std::fprintf(notes, "wrote %s (%zu run%s)\n", out.c_str(), r.runs.size(), r.runs.size() == 1 ? "" : "s");
  if (!r.svg_path.empty()) std::fprintf(notes, "wrote %s\n", r.svg_path.c_str());
  for (const auto& run : r.runs)
    if (run.has_dynamics)
      std::fprintf(notes, "README %s/%s: float64 array (%zu rows, %zu columns): %s\n", run.dir.c_str(),
                   dynamics_npy_name, run.dynamics.rows.size(), run.dynamics.columns.size(),
                   run.dynamics.header().c_str());
  return 0;
}

// Reads a checkpoint's model for generation.
template <class F>
int with_checkpoint(const std::string& file, F&& f) {
  const CheckpointInfo info = read_checkpoint_info(file);
  return with_model(info.model, [&]<class M>() {
    M model(info.config, 0);
    load_checkpoint(file, model);
    return f.template operator()<M>(model, info);
  });
}

int run_sample(const std::string& file, int n, double temperature, uint64_t seed, int max_len) {
  require(n >= 1, "--n must be >= 1");
  require(max_len >= 1, "--max-len must be >= 1");
  require(std::isfinite(temperature) && temperature >= 0, "--temperature must be >= 0 (0 = greedy)");
  return with_checkpoint(file, [&]<class M>(M& model, const CheckpointInfo& info) {
    if constexpr (M::has_latent && !detail::has_likelihood<M>()) {
      throw Error("sample: '" + info.model + "' has no prior to sample from (the DAE)");
    } else {
      Context<cpu> ctx(seed, false);
      for (int done = 0; done < n; done += 32)
        for (const auto& s : prior_samples(model, ctx, std::min(32, n - done), max_len, temperature))
          std::printf("%s\n", info.vocab.decode(s).c_str());
    }
    return 0;
  });
}

int run_interpolate(const std::string& file, const std::string& sa, const std::string& sb, int max_len) {
  return with_checkpoint(file, [&]<class M>(M& model, const CheckpointInfo& info) {
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
      }
      Context<cpu> ctx(0, false);
      const Batch b = make_batch(pair, info.config.vocab_size);
      const auto mu = model.posterior_means(ctx, b);
      const int Z = info.config.latent;
      // 7 points at weights (1 - k/6, k/6), k = 0..6 (reference.md §13).
      std::vector<float> codes(size_t(7) * Z);
      for (int k = 0; k <= 6; ++k)
        for (int d = 0; d < Z; ++d) codes[size_t(k) * Z + d] = float((1 - k / 6.0) * mu[d] + k / 6.0 * mu[size_t(Z) + d]);
      Buffer<float, cpu> zb;
      zb.from_host(codes.data(), codes.size());
      for (const auto& s : model.decode_codes(ctx, View<float>{zb.data(), 7, Z}, max_len, 0.0))
        std::printf("%s\n", info.vocab.decode(s).c_str());
    }
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"couplevae: variational text models with coupled deterministic networks (Couple-VAE)"};
  app.require_subcommand(1);
  TrainArgs ta;
  auto* train_cmd = ta.cmd = app.add_subcommand("train", "train a model; writes OUT/last.safetensors and OUT/best.safetensors");
  train_cmd->add_option("--model", ta.model, "model name: " + model_name_list())->required();
  train_cmd->add_option("--data", ta.data, "folder holding train.txt valid.txt test.txt")->required();
  train_cmd->add_option("--preset", ta.preset, "dataset preset: ptb, yelp or yahoo");
  train_cmd->add_option("--steps", ta.steps, "training steps (default: the preset's 60000)");
  train_cmd->add_option("--seed", ta.seed, "random seed");
  train_cmd->add_option("--out", ta.out, "output folder for checkpoints");
  train_cmd->add_option("--lambda-c", ta.lambda_c, "coupling weight (default: the preset's)");
  train_cmd->add_option("--coupling", ta.coupling, "coupling loss: rq (default) or euclidean");
  train_cmd->add_option("--beta", ta.beta, "cap of the KL weight for the beta-VAE models");
  train_cmd->add_option("--cnn-channels", ta.cnn_channels, "channels of the dilated CNN decoder");
  train_cmd->add_option("--dilations", ta.dilations, "dilations of the CNN decoder's blocks, e.g. 1 2 4 8 16");
  train_cmd->add_option("--resume", ta.resume, "continue from a last.safetensors");
  train_cmd->add_flag("--overwrite", ta.overwrite, "replace a run already in --out");
  train_cmd->add_option("--embed", ta.embed, "embedding size");
  train_cmd->add_option("--hidden", ta.hidden, "encoder size per direction (decoder: twice)");
  train_cmd->add_option("--latent", ta.latent, "latent size");
  train_cmd->add_option("--batch-size", ta.batch_size, "batch size");
  train_cmd->add_option("--valid-every", ta.valid_every, "validate every N steps");
  train_cmd->add_option("--valid-max-sentences", ta.valid_max_sentences, "validate on the first N sentences only");
  train_cmd->add_option("--kl-start", ta.kl_start, "step after which KL annealing starts");
  train_cmd->add_option("--kl-anneal-steps", ta.kl_anneal_steps, "steps over which the KL weight rises to its cap");
  train_cmd->add_option("--log-every", ta.log_every, "progress line every N steps");
  train_cmd->add_option("--track-every", ta.track_every,
                        "every K steps record the gradient norms (grad_rec, grad_reg, grad_h, ...) on fixed validation "
                        "sentences into OUT/dynamics.csv and OUT/dynamics.npy (0: off)");
  train_cmd->add_option("--track-sentences", ta.track_sentences, "validation sentences used by --track-every (default 200)");

  EvalArgs ea;
  auto* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint (importance-sampled NLL, KL, PPL)");
  eval_cmd->add_option("--checkpoint", ea.checkpoint, "a .safetensors checkpoint")->required();
  eval_cmd->add_option("--data", ea.data, "folder holding the split's .txt file")->required();
  eval_cmd->add_option("--split", ea.split, "train, valid or test");
  eval_cmd->add_option("--samples", ea.samples, "importance samples per sentence");
  eval_cmd->add_option("--max-sentences", ea.max_sentences, "evaluate the first M sentences only");
  eval_cmd->add_option("--metrics", ea.metrics, "comma-separated: nll,mi,bleu,dist,grad (default: all that apply)");
  eval_cmd->add_option("--mi-samples", ea.mi_samples, "samples per sentence for MI");
  eval_cmd->add_option("--bleu-samples", ea.bleu_samples, "posterior samples per sentence for BLEU");
  eval_cmd->add_option("--dist-samples", ea.dist_samples, "prior samples for Dist-1/2");
  eval_cmd->add_option("--seed", ea.seed, "seed of the evaluation noise");
  eval_cmd->add_flag("--json", ea.json, "print one JSON line last");
  eval_cmd->add_option("--json-out", ea.json_out, "also write the JSON object to FILE (atomically), e.g. RUN/eval.json");

  std::vector<std::string> report_runs;
  std::string report_out = "report.md", report_plot;
  bool report_squared = false;
  auto* report_cmd = app.add_subcommand(
      "report", "Markdown tables (paper Tables 1, 2, 4) and an SVG of the training dynamics over run folders");
  report_cmd->add_option("--runs", report_runs,
                         "run folders: best.safetensors or last.safetensors, optional eval.json and dynamics.csv")
      ->required();
  report_cmd->add_option("--out", report_out, "Markdown file to write (default report.md; - for standard output)");
  report_cmd->add_option("--plot", report_plot, "SVG figure of the training dynamics (default: --out with .svg)");
  report_cmd->add_flag("--squared", report_squared, "plot the squared norms (the *_sq columns) instead of the norms");

  std::string sample_ckpt;
  int sample_n = 10, sample_max_len = 200;
  double sample_temperature = 0;
  uint64_t sample_seed = 0;
  auto* sample_cmd = app.add_subcommand("sample", "print N samples from the prior, one a line");
  sample_cmd->add_option("--checkpoint", sample_ckpt, "a .safetensors checkpoint")->required();
  sample_cmd->add_option("--n", sample_n, "number of samples");
  sample_cmd->add_option("--temperature", sample_temperature, "0: greedy decoding; > 0: sampling");
  sample_cmd->add_option("--seed", sample_seed, "seed");
  sample_cmd->add_option("--max-len", sample_max_len, "maximum tokens");

  std::string interp_ckpt, interp_a, interp_b;
  auto* interp_cmd = app.add_subcommand("interpolate", "decode 7 points between two sentences' posterior means");
  interp_cmd->add_option("--checkpoint", interp_ckpt, "a .safetensors checkpoint")->required();
  interp_cmd->add_option("--a", interp_a, "first sentence")->required();
  interp_cmd->add_option("--b", interp_b, "second sentence")->required();

  std::string corpus_out;
  uint64_t corpus_seed = 0;
  int corpus_train = 3000;
  auto* corpus_cmd = app.add_subcommand("make-corpus", "write the small synthetic corpus of the quick start");
  corpus_cmd->add_option("--out", corpus_out, "folder to write train.txt valid.txt test.txt into")->required();
  corpus_cmd->add_option("--seed", corpus_seed, "seed");
  corpus_cmd->add_option("--train-lines", corpus_train, "training sentences");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "couplevae: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (*train_cmd) return run_train(ta);
    if (*eval_cmd) return run_eval(ea);
    if (*sample_cmd) return run_sample(sample_ckpt, sample_n, sample_temperature, sample_seed, sample_max_len);
    if (*interp_cmd) return run_interpolate(interp_ckpt, interp_a, interp_b, 200);
    if (*report_cmd) return run_report(report_runs, report_out, report_plot, report_squared);
    if (*corpus_cmd) {
      require(corpus_train >= 10, "--train-lines must be >= 10");
      write_toy_corpus(corpus_out, corpus_seed, corpus_train);
      std::printf("wrote %s/train.txt valid.txt test.txt\n", corpus_out.c_str());
      return 0;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
