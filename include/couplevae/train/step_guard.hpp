// couplevae/train/step_guard.hpp: the trainer's per-step checks, kept on the backend.
//
// After backward, check(arena, losses, t) computes in the backend's memory
//   norm = ||g||_2 over the whole arena                       (a double reduction)
//   ok   = isfinite(loss) and isfinite(norm), and the run not stopped
//   gate = {scale = min(1, max_norm / (norm + 1e-6)), apply = ok}   (PyTorch's clip_grad_norm_)
// and Adam::step(ar, lr, guard.gate()) clips by the gate or skips the update, so a step
// has no host round trip (reference.md §9: clip 30; a non-finite step is skipped). The
// guard also counts: non-finite steps in a row and in all; the step at which
// `max_nonfinite` in a row was reached (from then on nothing is applied, and the host
// stops the run when it next reads); and, for progress lines, the summed Losses and norms
// of the applied steps since start_window() and the last applied step's Losses.
// read() copies that tally to the host and waits for the backend: the trainer does it at
// progress lines, validations and every max_nonfinite steps, never inside a step.
#pragma once
#include <cmath>

#include "../backend/cpu/ops.hpp"
#include "../backend/kernels.hpp"
#include "../backend/launch.hpp"
#include "../core/arena.hpp"
#include "../core/hd.hpp"
#include "../model/losses.hpp"

namespace couplevae {

// What the guard knows, in the backend's memory (one element).
struct StepTally {
  kernels::UpdateGate gate;     // this step's decision, read by Adam
  double sumsq = 0;             // sum of g^2 of the step being checked (zeroed once used)
  double norm = 0;              // the last checked step's gradient norm
  long long run = 0;            // non-finite steps in a row
  long long skipped = 0;        // non-finite steps in all
  long long stop_step = 0;      // the step that made max_nonfinite in a row; 0: none
  long long window_steps = 0;   // applied steps since start_window()
  Losses window;                // their Losses, summed (kl_weight: the last one's)
  double window_norm = 0;       // their gradient norms, summed
  Losses last;                  // the last applied step's Losses
};

namespace guard_kernels {

COUPLEVAE_HD inline bool is_finite(double x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// i < 1: the decision for step `step` from its loss parts and s->sumsq.
struct Decide {
  StepTally* s;
  PendingLosses l;
  double max_norm;
  long long max_nonfinite, step;
  COUPLEVAE_HD void operator()(size_t) const {
    const double norm = std::sqrt(s->sumsq);
    s->sumsq = 0;
    s->norm = norm;
    s->gate.apply = 0;
    if (s->stop_step) return;
    const Losses x = combine_losses(l.parts, l);
    if (!is_finite(x.loss) || !is_finite(norm)) {
      ++s->skipped;
      if (++s->run >= max_nonfinite) s->stop_step = step;
      return;
    }
    s->gate.scale = kernels::clip_factor(norm, max_norm);
    s->gate.apply = 1;
    s->run = 0;
    Losses& w = s->window;
    w.loss += x.loss, w.rec += x.rec, w.reg += x.reg, w.kl += x.kl, w.rec_c += x.rec_c, w.couple += x.couple;
    w.kl_weight = x.kl_weight;
    w.sentences += x.sentences;
    w.tokens += x.tokens;
    s->window_norm += norm;
    ++s->window_steps;
    s->last = x;
  }
};

// i < 1: zeroes the window sums.
struct ClearWindow {
  StepTally* s;
  COUPLEVAE_HD void operator()(size_t) const {
    s->window = Losses{};
    s->window_norm = 0;
    s->window_steps = 0;
  }
};

}  // namespace guard_kernels

template <class B>
class StepGuard {
 public:
  StepGuard(double max_norm, int max_nonfinite) : max_norm_(max_norm), max_nonfinite_(max_nonfinite) { restore(0); }

  // After backward of step t whose forward returned l.
  template <class T>
  void check(Arena<T, B>& ar, const PendingLosses& l, long t) {
    StepTally* s = tally_.data();
    ops<B>::sum_squares_into(ar.grads().data(), ar.total(), 1.0, &s->sumsq);
    launch<B>::for_each(1, guard_kernels::Decide{s, l, max_norm_, max_nonfinite_, t});
  }
  // This step's decision, in the backend's memory (Adam::step's gate).
  const kernels::UpdateGate* gate() const { return &tally_.data()->gate; }

  // The tally, on the host (waits for the backend).
  StepTally read() const { return tally_.to_host()[0]; }
  void start_window() { launch<B>::for_each(1, guard_kernels::ClearWindow{tally_.data()}); }
  // A fresh tally that counts `skipped` earlier non-finite steps (a resumed run).
  void restore(long skipped) {
    StepTally s;
    s.skipped = skipped;
    tally_.from_host(&s, 1);
  }

 private:
  double max_norm_;
  long long max_nonfinite_;
  Buffer<StepTally, B> tally_;
};

}  // namespace couplevae
