// couplevae/train/adam.hpp: Adam over a whole parameter arena in one pass (reference.md §9).
//
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   theta -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// PyTorch's formulation, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay. Every
// element's moments decay every step (also rows of the embedding that the batch did not
// touch), exactly as dense Adam. The moments are arena-shaped buffers, so they travel in
// checkpoints under the parameters' names.
// The step count t and the bias corrections live in the backend's memory (an AdamClock,
// backend/kernels.hpp), so step(ar, lr, gate) can be told by a device-side UpdateGate
// (train/step_guard.hpp) to clip the gradients by gate->scale or to skip the update, t
// included, without the host reading anything. steps() / set_steps() copy t (checkpoints).
#pragma once
#include <cmath>

#include "../backend/cpu/ops.hpp"
#include "../backend/kernels.hpp"
#include "../backend/launch.hpp"
#include "../config.hpp"
#include "../core/arena.hpp"

namespace couplevae {

template <class T, class B = cpu>
class Adam {
 public:
  Adam(const Arena<T, B>& ar, const Config& cfg)
      : beta1_(cfg.adam_beta1), beta2_(cfg.adam_beta2), eps_(cfg.adam_eps) {
    m_.resize(ar.total());
    v_.resize(ar.total());
    m_.fill_zero();
    v_.fill_zero();
    set_steps(0);
  }

  // One update with learning rate lr: t += 1 and the update, or nothing when gate (the
  // backend's memory, may be null) says so; gradients scaled by gate->scale first.
  void step(Arena<T, B>& ar, double lr, const kernels::UpdateGate* gate = nullptr) {
    launch<B>::for_each(1, kernels::AdamTick{clock_.data(), gate, lr, beta1_, beta2_});
    ops<B>::adam(ar.total(), ar.values().data(), ar.grads().data(), m_.data(), v_.data(), clock_.data(), beta1_,
                 beta2_, eps_);
  }

  // Updates applied so far (waits for the backend).
  long steps() const { return long(clock_.to_host()[0].t); }
  void set_steps(long t) {
    kernels::AdamClock c;
    c.t = t;
    clock_.from_host(&c, 1);
  }
  Buffer<T, B>& first_moment() { return m_; }
  Buffer<T, B>& second_moment() { return v_; }

 private:
  double beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  Buffer<T, B> m_, v_;
  Buffer<kernels::AdamClock, B> clock_;
};

// Global L2 norm of all gradients; when it exceeds max_norm every gradient is scaled by
// max_norm / (norm + 1e-6) (PyTorch's clip_grad_norm_). Returns the norm before clipping.
template <class T, class B>
double clip_grad_norm(Arena<T, B>& ar, double max_norm) {
  const double norm = std::sqrt(ops<B>::sum_squares(ar.grads().data(), ar.total()));
  const double coef = kernels::clip_factor(norm, max_norm);
  if (coef < 1) ops<B>::scale(ar.grads().data(), ar.total(), T(coef));
  return norm;
}

// lr(t) = lr0 * decay^n(t), n(t) = #{m in (decay_start, t] : m % decay_every == 0}: halved at
// 32K, 34K, ... with the defaults (reference.md §9).
inline double learning_rate(const Config& c, long step) {
  long n = 0;
  if (step > c.lr_decay_start) n = step / c.lr_decay_every - c.lr_decay_start / c.lr_decay_every;
  return c.lr * std::pow(c.lr_decay, double(std::max(0L, n)));
}

}  // namespace couplevae
