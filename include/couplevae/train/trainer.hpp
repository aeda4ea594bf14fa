// couplevae/train/trainer.hpp: the training loop of reference.md §9, as a convenience over
// the public forward / backward / Adam / clipping pieces.
//
// Each step t = 1..steps: next shuffled batch of 32; zero gradients; forward at step t (KL
// annealing); backward; global-norm clipping at 30; Adam with lr(t) (halved every 2K steps
// after 30K). A non-finite loss or gradient skips the update (counted, reported); after
// `max_nonfinite` in a row the run stops with an Error, the last good checkpoint kept.
// Every valid_every steps and at the final step: importance-sampled validation NLL (N = 10)
// with a generator of its own (training noise is untouched), best.safetensors when it
// improves, and last.safetensors (model + Adam + training state) so a killed run resumes
// from its last validation with --resume and then follows the uninterrupted run exactly.
// A progress line every `log_every` steps: step, loss parts, gradient norm, steps/s, ETA.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

#include "../data/batcher.hpp"
#include "../data/corpus.hpp"
#include "../eval/nll.hpp"
#include "adam.hpp"
#include "checkpoint.hpp"

namespace couplevae {

struct TrainOptions {
  std::string out_dir;         // receives last.safetensors and best.safetensors ("" = no files)
  std::string model_name = "model";
  uint64_t seed = 0;
  long steps = -1;             // -1: config.steps
  std::string resume;          // a last.safetensors to continue from
  bool overwrite = false;      // allow an out_dir that already holds a run
  int log_every = 100;
  size_t valid_max_sentences = size_t(-1);
  int max_nonfinite = 20;
  std::ostream* log = &std::cerr;
};

struct TrainResult {
  long steps = 0;
  double best_valid = 0;
  long best_step = 0;
  long nonfinite_skipped = 0;
  Losses last;
  double seconds = 0;
};

namespace detail {
inline std::string format_duration(double s) {
  char buf[64];
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}
}  // namespace detail

// Refuses an out_dir holding a previous run unless resuming or overwriting; creates it.
inline void prepare_out_dir(const TrainOptions& o) {
  namespace fs = std::filesystem;
  if (o.out_dir.empty()) return;
  const fs::path dir(o.out_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error("--out " + o.out_dir + ": exists and is not a folder");
  const bool has_run = fs::exists(dir / "last.safetensors", ec) || fs::exists(dir / "best.safetensors", ec);
  if (has_run && o.resume.empty() && !o.overwrite)
    throw Error("--out " + o.out_dir + ": already holds a run (last.safetensors); pass --resume FILE to continue it or --overwrite to replace it");
  fs::create_directories(dir, ec);
  if (ec) throw Error("--out " + o.out_dir + ": cannot create the folder: " + ec.message());
  // Probe writability now rather than after an hour of training.
  const fs::path probe = dir / ".couplevae-write-test";
  FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) throw Error("--out " + o.out_dir + ": the folder is not writable");
  std::fclose(f);
  fs::remove(probe, ec);
}

template <class M>
TrainResult train(M& model, const Dataset& data, const TrainOptions& opt) {
  using T = typename M::scalar;
  using B = typename M::backend;
  namespace fs = std::filesystem;
  const Config& cfg = model.config();
  const long steps = opt.steps >= 0 ? opt.steps : cfg.steps;
  require(steps >= 1, "train: steps must be >= 1");
  require(int(data.vocab.size()) == cfg.vocab_size,
          "train: the data's vocabulary has " + std::to_string(data.vocab.size()) + " words but the model's vocab_size is " +
              std::to_string(cfg.vocab_size));
  prepare_out_dir(opt);
  std::ostream& log = *opt.log;

  Adam<T, B> adam(model.arena(), cfg);
  Batcher batcher(data.train, cfg.vocab_size, opt.seed, cfg.batch_size);
  Context<B> ctx(Rng(opt.seed).derive(0x747261696eull).seed, true);  // "train"
  TrainState st;
  if (!opt.resume.empty()) {
    const CheckpointInfo info = load_checkpoint(opt.resume, model, &adam);
    require(info.has_train_state, "checkpoint " + opt.resume + ": holds no training state to resume from");
    require(info.model == opt.model_name, "checkpoint " + opt.resume + ": it holds a '" + info.model +
                                              "' run, not '" + opt.model_name + "'");
    st = info.state;
    require(st.step <= steps, "checkpoint " + opt.resume + ": already at step " + std::to_string(st.step) +
                                  ", beyond --steps " + std::to_string(steps));
    ctx.rng.position = st.rng_position;
    batcher.restore(st.epoch, st.position);
    log << "resumed " << opt.resume << " at step " << st.step << "\n";
  }

  auto save = [&](const std::string& name) {
    if (opt.out_dir.empty()) return;
    st.rng_position = ctx.rng.position;
    st.epoch = batcher.epoch();
    st.position = batcher.position();
    save_checkpoint((fs::path(opt.out_dir) / name).string(), model, opt.model_name, data.vocab, &adam, &st);
  };
  auto validate = [&] {
    const NllReport r = evaluate_nll(model, data.valid, cfg.valid_samples, opt.seed + uint64_t(st.step),
                                     opt.valid_max_sentences, cfg.batch_size);
    // The DAE keeps its best checkpoint by cross-entropy (reference.md §9), the others by NLL.
    const double score = r.has_nll ? r.nll : r.rec;
    const bool better = st.best_step == 0 || score < st.best_valid;
    if (better) {
      st.best_valid = score;
      st.best_step = st.step;
    }
    if (r.has_nll)
      log << "valid step " << st.step << ": nll " << r.nll << " kl " << r.kl << " ppl " << r.ppl;
    else
      log << "valid step " << st.step << ": rec " << r.rec;
    log << (better ? " (best)" : "") << "\n";
    if (better) save("best.safetensors");
    save("last.safetensors");
  };

  TrainResult res;
  const auto t0 = std::chrono::steady_clock::now();
  auto window_start = t0;
  long window_steps = 0, nonfinite_run = 0, last_logged = st.step;
  Losses acc;
  double acc_norm = 0;
  const long first = st.step + 1;
  for (long t = first; t <= steps; ++t) {
    const Batch batch = batcher.next();
    model.zero_grad();
    const Losses l = model.forward(ctx, batch, t);
    model.backward(ctx);
    const double norm = clip_grad_norm(model.arena(), cfg.clip_norm);
    st.step = t;
    if (!std::isfinite(l.loss) || !std::isfinite(norm)) {
      ++st.nonfinite_skipped;
      if (++nonfinite_run >= opt.max_nonfinite)
        throw Error("train: " + std::to_string(nonfinite_run) + " non-finite losses or gradients in a row at step " +
                    std::to_string(t) + "; stopped (the last good checkpoint is kept)");
    } else {
      nonfinite_run = 0;
      adam.step(model.arena(), learning_rate(cfg, t));
      acc.loss += l.loss, acc.rec += l.rec, acc.kl += l.kl, acc.reg += l.reg, acc.rec_c += l.rec_c,
          acc.couple += l.couple;
      acc_norm += norm;
      acc.kl_weight = l.kl_weight;
      ++window_steps;
      res.last = l;
    }
    if (opt.log_every > 0 && (t % opt.log_every == 0 || t == steps)) {
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - window_start).count();
      const double done = std::chrono::duration<double>(now - t0).count();
      const double rate = double(t - first + 1) / std::max(done, 1e-9);
      const double n = std::max<long>(window_steps, 1);
      char line[512];
      std::snprintf(line, sizeof line,
                    "step %ld/%ld | loss %.3f rec %.3f kl %.3f (w %.4f)%s | |g| %.2f lr %.2g | %.2f steps/s | ETA %s%s",
                    t, steps, acc.loss / n, acc.rec / n, acc.kl / n, acc.kl_weight,
                    M::is_coupled ? (" rec_c " + std::to_string(acc.rec_c / n).substr(0, 8) + " couple " +
                                     std::to_string(acc.couple / n).substr(0, 7))
                                        .c_str()
                                  : "",
                    acc_norm / n, learning_rate(cfg, t), double(t - last_logged) / std::max(dt, 1e-9),
                    detail::format_duration(double(steps - t) / rate).c_str(),
                    st.nonfinite_skipped ? (" | skipped " + std::to_string(st.nonfinite_skipped) + " non-finite").c_str() : "");
      log << line << std::endl;
      acc = Losses{};
      acc_norm = 0;
      window_steps = 0;
      window_start = now;
      last_logged = t;
    }
    if (t % cfg.valid_every == 0 || t == steps) validate();
  }
  res.steps = st.step;
  res.best_valid = st.best_valid;
  res.best_step = st.best_step;
  res.nonfinite_skipped = st.nonfinite_skipped;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace couplevae
