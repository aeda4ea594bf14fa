// couplevae/train/trainer.hpp: the training loop of reference.md §9, as a convenience over
// the public forward / backward / Adam / clipping pieces.
//
// Each step t = 1..steps (train_step): next shuffled batch of 32; zero gradients; forward at
// step t (KL annealing); backward; global-norm clipping at 30; Adam with lr(t) (halved every
// 2K steps after 30K). A non-finite loss or gradient skips the update (counted, reported);
// after `max_nonfinite` in a row the run stops with an Error, the last good checkpoint kept.
// The clipping, the skipping and the loss sums of the progress lines are decided on the
// backend (train/step_guard.hpp), so a step never waits for it; the host reads the tally at
// progress lines, validations and every max_nonfinite steps.
// Every valid_every steps and at the final step: importance-sampled validation NLL (N = 10,
// batches of Config::eval_batch()) with a generator of its own (training noise is
// untouched), its seconds on the log line, best.safetensors when it improves, and
// last.safetensors (model + Adam + training state) so a killed run resumes
// from its last validation with --resume and then follows the uninterrupted run exactly.
// A progress line every `log_every` steps: step, loss parts, gradient norm, steps/s, ETA.
// With track_every = K > 0 (models with a latent path), after the update of every step
// t = K, 2K, ... and before that step's validation: the gradient-norm dynamics row on the
// first track_sentences validation sentences (eval/dynamics.hpp; its own noise, BatchNorm
// statistics restored, so training is unchanged bit for bit), appended to
// TrainResult::dynamics and rewritten atomically to OUT/dynamics.csv and OUT/dynamics.npy.
// A fresh run removes stale dynamics files from OUT; a resumed run reads OUT/dynamics.csv
// (or the one beside the resumed checkpoint) and keeps its rows up to the resumed step.
// With config.aggressive (Lagging-VAE), steps run aggressive_step (train/aggressive.hpp)
// until the validation MI measured at an epoch's end falls; the phase, the inner loop's
// batcher and the inference network's Adam count travel in the checkpoints.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include "../data/batcher.hpp"
#include "../data/corpus.hpp"
#include "../eval/dynamics.hpp"
#include "../core/format.hpp"
#include "../eval/nll.hpp"
#include "adam.hpp"
#include "aggressive.hpp"
#include "checkpoint.hpp"
#include "step_guard.hpp"

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
  long track_every = 0;           // > 0: gradient-norm dynamics every K steps (eval/dynamics.hpp)
  size_t track_sentences = 200;   // ... on the first N validation sentences
};

struct TrainResult {
  long steps = 0;
  double best_valid = 0;
  long best_step = 0;
  long nonfinite_skipped = 0;
  Losses last;
  double seconds = 0;
  DynamicsLog dynamics;  // the tracked rows (resumed ones included); empty without tracking
  // Aggressive training: the last step of the phase (0: none, or still on at the end) and
  // the inference-network updates of its inner loops.
  long aggressive_until = 0;
  long inner_updates = 0;
};

namespace detail {
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
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

// One training step t on `batch` with no host wait: forward, backward, the guard's checks,
// and the update it allows (the loop of train() and of bench/). The backend's step_runner
// runs it (backend/launch.hpp): eagerly, or on cuda as a CUDA Graph replayed per bucket
// (backend/cuda/graph.cuh), where a failed replay rewinds the generator and runs it again.
template <class M>
void train_step(M& model, Context<typename M::backend>& ctx, const Batch& batch, long t,
                Adam<typename M::scalar, typename M::backend>& adam, StepGuard<typename M::backend>& guard) {
  auto step = [&] {
    model.zero_grad();
    const PendingLosses l = model.forward_async(ctx, batch, t);
    model.backward(ctx);
    guard.check(model.arena(), l, t);
    adam.step(model.arena(), learning_rate(model.config(), t), guard.gate());
  };
  constexpr bool capturable = [] {
    if constexpr (requires { M::graph_capturable; })
      return bool(M::graph_capturable);
    else
      return true;
  }();
  if constexpr (capturable) {
    const uint64_t position = ctx.rng.position;
    step_runner<typename M::backend>::run(&model, &adam, batch, step, [&] { ctx.rng.position = position; });
  } else {
    step();  // a step that reads the backend (SA-VAE) is never captured
  }
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
  require(opt.track_every >= 0, "train: track_every must be >= 0");
  require(opt.track_every == 0 || opt.track_sentences >= 1, "train: track_sentences must be >= 1");
  prepare_out_dir(opt);
  std::ostream& log = *opt.log;

  Adam<T, B> adam(model.arena(), cfg);
  StepGuard<B> guard(cfg.clip_norm, opt.max_nonfinite);
  Batcher batcher(data.train, cfg.vocab_size, opt.seed, cfg.batch_size);
  batcher.set_bucket(step_runner<B>::bucket());  // bucketed batches when the backend replays graphs
  Context<B> ctx(Rng(opt.seed).derive(0x747261696eull).seed, true);  // "train"
  TrainState st;
  // Aggressive training (train/aggressive.hpp): two parameter groups, the inner loop's batches.
  std::optional<Batcher> inner;
  std::optional<StepGuard<B>> inner_guard;
  if (cfg.aggressive) {
    if constexpr (!detail::mi_applicable<M>())
      throw Error("train: '" + opt.model_name + "' cannot train aggressively (Lagging-VAE): the phase ends by the "
                  "posterior's mutual information, and this model has no stochastic posterior");
    require(data.valid.size() >= 2, "train: aggressive training measures the validation MI at every epoch's end; "
                                    "it needs at least 2 validation sentences (the data has " +
                                        std::to_string(data.valid.size()) + ")");
    adam.split(inference_range(model.arena()));
    inner.emplace(data.train, cfg.vocab_size, Rng(opt.seed).derive(0x6275726eull).seed, cfg.batch_size);  // "burn"
    inner_guard.emplace(cfg.clip_norm, opt.max_nonfinite);
    st.has_aggressive = true;
  }
  if (!opt.resume.empty()) {
    // What the checkpoint is, checked before anything is loaded.
    const CheckpointInfo info = read_checkpoint_info(opt.resume);
    require(info.has_train_state, "checkpoint " + opt.resume + ": holds no training state to resume from");
    require(info.model == opt.model_name, "checkpoint " + opt.resume + ": it holds a '" + info.model +
                                              "' run, not '" + opt.model_name + "'");
    require(info.vocab == data.vocab, "checkpoint " + opt.resume +
                                          ": its vocabulary differs from the one built from the data (" +
                                          std::to_string(info.vocab.size()) + " vs " + std::to_string(data.vocab.size()) +
                                          " words); resume with the same training corpus");
    load_checkpoint(opt.resume, model, &adam);
    st = info.state;
    require(st.has_aggressive == cfg.aggressive,
            "checkpoint " + opt.resume + ": " +
                (cfg.aggressive ? "holds no aggressive-training state; it was not an aggressive (Lagging-VAE) run"
                                : "is an aggressive (Lagging-VAE) run; resume it with the same model and --aggressive"));
    if (inner) inner->restore(st.aggressive.epoch, st.aggressive.position);
    require(st.step <= steps, "checkpoint " + opt.resume + ": already at step " + std::to_string(st.step) +
                                  ", beyond --steps " + std::to_string(steps));
    ctx.rng.position = st.rng_position;
    batcher.restore(st.epoch, st.position);
    guard.restore(st.nonfinite_skipped);
    log << "resumed " << opt.resume << " at step " << st.step << "\n";
  }

  // Training dynamics (eval/dynamics.hpp).
  DynamicsLog dynamics;
  bool tracking = false;
  if (!opt.out_dir.empty() && opt.resume.empty()) {
    // A fresh run: dynamics files of a replaced run must not mix with this one's.
    std::error_code ec;
    fs::remove(fs::path(opt.out_dir) / dynamics_csv_name, ec);
    fs::remove(fs::path(opt.out_dir) / dynamics_npy_name, ec);
  }
  constexpr bool trackable = M::has_latent && !requires { M::is_semi_amortized; };
  if constexpr (trackable) {
    if (opt.track_every > 0) {
      require(!data.valid.empty(), "train: gradient-norm tracking needs validation sentences (the data has none)");
      tracking = true;
      dynamics.columns = dynamics_columns<M>();
      if (!opt.resume.empty()) {
        std::error_code ec;
        fs::path src;
        if (!opt.out_dir.empty() && fs::exists(fs::path(opt.out_dir) / dynamics_csv_name, ec))
          src = fs::path(opt.out_dir) / dynamics_csv_name;
        else if (fs::exists(fs::path(opt.resume).parent_path() / dynamics_csv_name, ec))
          src = fs::path(opt.resume).parent_path() / dynamics_csv_name;
        if (!src.empty()) {
          DynamicsLog earlier = DynamicsLog::read_csv(src.string());
          require(earlier.columns == dynamics.columns, "dynamics " + src.string() + ": columns " + earlier.header() +
                                                           " do not match this model's " + dynamics.header());
          earlier.keep_through(st.step);
          dynamics.rows = std::move(earlier.rows);
          log << "dynamics: kept " << dynamics.rows.size() << " rows up to step " << st.step << " from " << src.string()
              << "\n";
        }
        if (!opt.out_dir.empty()) dynamics.write(opt.out_dir);
      }
    }
  } else {
    if (opt.track_every > 0)
      log << "note: '" << opt.model_name
          << (M::has_latent ? "' refines its posterior per sentence (SA-VAE)" : "' has no latent path")
          << "; gradient-norm tracking is off\n";
  }
  const uint64_t track_seed = dynamics_seed(opt.seed);
  auto track = [&](long t) {
    if constexpr (trackable) {
      const auto t_start = std::chrono::steady_clock::now();
      dynamics.append(dynamics_row(model, data.valid, opt.track_sentences, track_seed, t));
      if (!opt.out_dir.empty()) dynamics.write(opt.out_dir);
      const double secs = detail::seconds_since(t_start);
      const auto& row = dynamics.rows.back();
      std::string line = "dynamics step " + std::to_string(t) + ":";
      for (const char* name : {"grad_rec", "grad_rec_sum", "grad_reg", "grad_h"}) {
        const int c = dynamics.column(name);
        if (c < 0) continue;
        char buf[64];
        std::snprintf(buf, sizeof buf, " %s %.4g", name, row[size_t(c)]);
        line += buf;
      }
      char tail[96];
      std::snprintf(tail, sizeof tail, " (%zu sentences, %.1f s)", std::min(opt.track_sentences, data.valid.size()), secs);
      log << line << tail << "\n";
    } else {
      (void)t;
    }
  };

  auto save = [&](const std::string& name) {
    if (opt.out_dir.empty()) return;
    st.rng_position = ctx.rng.position;
    st.epoch = batcher.epoch();
    st.position = batcher.position();
    if (inner) {
      st.aggressive.epoch = inner->epoch();
      st.aggressive.position = inner->position();
    }
    save_checkpoint((fs::path(opt.out_dir) / name).string(), model, opt.model_name, data.vocab, &adam, &st);
  };
  auto validate = [&] {
    const auto started = std::chrono::steady_clock::now();
    const NllReport r = evaluate_nll(model, data.valid, cfg.valid_samples, opt.seed + uint64_t(st.step),
                                     opt.valid_max_sentences, cfg.eval_batch());
    const double secs = detail::seconds_since(started);
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
    log << printf_string(" (%.1f s)", secs) << (better ? " (best)" : "") << "\n";
    if (better) save("best.safetensors");
    save("last.safetensors");
  };

  TrainResult res;
  long window_inner = 0;
  // At the end of an epoch of the aggressive phase: the validation MI decides whether it goes on.
  auto end_aggressive_epoch = [&](long t) {
    if constexpr (detail::mi_applicable<M>()) {
      const auto t_start = std::chrono::steady_clock::now();
      const double mi = evaluate_mi(model, data.valid, 10, 513, Rng(opt.seed).derive(0x6d69ull).derive(uint64_t(t)).seed,
                                    opt.valid_max_sentences);
      const double before = st.aggressive.last_mi;
      const bool first = st.aggressive.epochs == 0;
      const bool on = AggressiveSchedule{st.aggressive}.end_epoch(mi);
      const double secs = detail::seconds_since(t_start);
      log << printf_string("aggressive: epoch end at step %ld, valid MI %.4f", t, mi)
          << (first ? "" : printf_string(" (previous %.4f)", before))
          << (on ? "; the phase goes on" : "; MI fell, the phase ends: both groups update every step from now on")
          << printf_string(" (%.1f s)", secs) << std::endl;
      if (!on) st.aggressive.until = t;
    } else {
      (void)t;
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto window_start = t0;
  long last_logged = st.step;
  const long first = st.step + 1;
  const long poll_every = std::max(1, opt.max_nonfinite);
  for (long t = first; t <= steps; ++t) {
    const uint64_t epoch_before = batcher.epoch();
    if (cfg.aggressive && st.aggressive.on) {
      if constexpr (detail::mi_applicable<M>()) {
        const int n = aggressive_step(model, ctx, batcher.next(), t, adam, guard, *inner_guard, *inner);
        st.aggressive.inner_steps += n;
        window_inner += n;
      }
    } else {
      train_step(model, ctx, batcher.next(), t, adam, guard);
    }
    st.step = t;
    if (cfg.aggressive && st.aggressive.on && batcher.epoch() != epoch_before) end_aggressive_epoch(t);
    const bool log_now = opt.log_every > 0 && (t % opt.log_every == 0 || t == steps);
    const bool track_now = tracking && t % opt.track_every == 0;
    const bool valid_now = t % cfg.valid_every == 0 || t == steps;
    if (!(log_now || track_now || valid_now || t % poll_every == 0)) continue;
    const StepTally tally = guard.read();
    if (tally.stop_step)
      throw Error("train: " + std::to_string(tally.run) + " non-finite losses or gradients in a row at step " +
                  std::to_string(tally.stop_step) + "; stopped (the last good checkpoint is kept)");
    st.nonfinite_skipped = tally.skipped;
    res.last = tally.last;
    if (log_now) {
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - window_start).count();
      const double done = std::chrono::duration<double>(now - t0).count();
      const double rate = double(t - first + 1) / std::max(done, 1e-9);
      const double n = double(std::max<long long>(tally.window_steps, 1));
      const Losses& acc = tally.window;
      std::string line = printf_string("step %ld/%ld | loss %.3f rec %.3f reg %.3f kl %.3f (w %.4f)", t, steps,
                                       acc.loss / n, acc.rec / n, acc.reg / n, acc.kl / n, acc.kl_weight);
      if (M::is_coupled) line += printf_string(" rec_c %.3f couple %.3f", acc.rec_c / n, acc.couple / n);
      line += printf_string(" | |g| %.2f lr %.2g | %.2f steps/s | ETA %s", tally.window_norm / n, learning_rate(cfg, t),
                            double(t - last_logged) / std::max(dt, 1e-9),
                            detail::format_duration(double(steps - t) / rate).c_str());
      if (st.nonfinite_skipped) line += printf_string(" | skipped %ld non-finite", long(st.nonfinite_skipped));
      if (window_inner)
        line += printf_string(" | aggressive: %.2f encoder updates/step", double(window_inner) / double(t - last_logged));
      window_inner = 0;
      log << line << std::endl;
      guard.start_window();
      window_start = now;
      last_logged = t;
    }
    // Before validation: last.safetensors at step t then always has its dynamics row on disk.
    if (track_now) track(t);
    if (valid_now) validate();
  }
  res.steps = st.step;
  res.best_valid = st.best_valid;
  res.best_step = st.best_step;
  res.nonfinite_skipped = st.nonfinite_skipped;
  res.dynamics = std::move(dynamics);
  res.inner_updates = st.aggressive.inner_steps;
  res.aggressive_until = st.aggressive.until;
  res.seconds = detail::seconds_since(t0);
  return res;
}

}  // namespace couplevae
