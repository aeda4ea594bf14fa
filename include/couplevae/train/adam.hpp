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
//
// Parameter groups (Lagging-VAE's aggressive training, train/aggressive.hpp): after
// split(inference) the elements [inference.begin, inference.end) of the arena (the encoder
// and the posterior heads) keep a clock of their own, and step(ar, lr, gate, group) updates
// the inference network, the generative model (the rest) or both; each group is exactly
// He et al.'s separate optimiser of that group. Without split() there is one group and one
// update over the whole arena.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>

#include "../backend/cpu/ops.hpp"
#include "../backend/kernels.hpp"
#include "../backend/launch.hpp"
#include "../config.hpp"
#include "../core/arena.hpp"

namespace couplevae {

// A contiguous run of arena elements, [begin, end).
struct ParamRange {
  size_t begin = 0, end = 0;
  bool empty() const { return end <= begin; }
  size_t size() const { return empty() ? 0 : end - begin; }
};

// What one Adam::step updates.
enum class ParamGroup { all, inference, generative };

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
  // With groups (split()), `group` picks which of them this update moves and ticks.
  void step(Arena<T, B>& ar, double lr, const kernels::UpdateGate* gate = nullptr, ParamGroup group = ParamGroup::all) {
    if (inference_.empty()) {
      require(group == ParamGroup::all, "Adam::step: a group update needs split() first");
      launch<B>::for_each(1, kernels::AdamTick{clock_.data(), gate, lr, beta1_, beta2_});
      update(ar, 0, ar.total(), clock_);
      return;
    }
    if (group != ParamGroup::inference) {
      launch<B>::for_each(1, kernels::AdamTick{clock_.data(), gate, lr, beta1_, beta2_});
      update(ar, 0, inference_.begin, clock_);
      update(ar, inference_.end, ar.total(), clock_);
    }
    if (group != ParamGroup::generative) {
      launch<B>::for_each(1, kernels::AdamTick{inference_clock_.data(), gate, lr, beta1_, beta2_});
      update(ar, inference_.begin, inference_.end, inference_clock_);
    }
  }

  // Gives the elements of `inference` a clock of their own (starting at this one's count).
  void split(ParamRange inference) {
    require(!inference.empty() && inference.end <= m_.size(),
            "Adam::split: the range [" + std::to_string(inference.begin) + ", " + std::to_string(inference.end) +
                ") is empty or outside the arena of " + std::to_string(m_.size()) + " elements");
    inference_ = inference;
    set_inference_steps(steps());
  }
  bool is_split() const { return !inference_.empty(); }

  // Updates applied so far (waits for the backend): the whole arena's, or with groups the
  // generative model's; inference_steps() those of the inference network.
  long steps() const { return long(clock_.to_host()[0].t); }
  void set_steps(long t) { set_clock(clock_, t); }
  long inference_steps() const { return is_split() ? long(inference_clock_.to_host()[0].t) : steps(); }
  void set_inference_steps(long t) {
    require(is_split(), "Adam::set_inference_steps: the optimiser has no groups (split() first)");
    set_clock(inference_clock_, t);
  }
  Buffer<T, B>& first_moment() { return m_; }
  Buffer<T, B>& second_moment() { return v_; }

 private:
  void update(Arena<T, B>& ar, size_t begin, size_t end, Buffer<kernels::AdamClock, B>& clock) {
    if (end <= begin) return;
    ops<B>::adam(end - begin, ar.values().data() + begin, ar.grads().data() + begin, m_.data() + begin,
                 v_.data() + begin, clock.data(), beta1_, beta2_, eps_);
  }
  static void set_clock(Buffer<kernels::AdamClock, B>& clock, long t) {
    kernels::AdamClock c;
    c.t = t;
    clock.from_host(&c, 1);
  }

  double beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  Buffer<T, B> m_, v_;
  Buffer<kernels::AdamClock, B> clock_, inference_clock_;
  ParamRange inference_;
};

// The arena elements of the inference network: the encoder ("encoder.*") and the
// stochastic posterior heads ("posterior.*"), registered one after the other by Model.
template <class T, class B>
ParamRange inference_range(const Arena<T, B>& ar) {
  ParamRange r{ar.total(), 0};
  bool seen = false, ended = false;
  for (const auto& p : ar.infos()) {
    const bool inside = p.name.rfind("encoder.", 0) == 0 || p.name.rfind("posterior.", 0) == 0;
    if (inside) {
      require(!ended, "inference_range: the encoder and posterior tensors are not contiguous in the arena ('" +
                          p.name + "' comes after other tensors)");
      r.begin = std::min(r.begin, p.offset);
      r.end = std::max(r.end, p.offset + (p.size + 15) / 16 * 16);
      seen = true;
    } else if (seen) {
      ended = true;
    }
  }
  require(seen, "inference_range: the model has no encoder or posterior tensors");
  r.end = std::min(r.end, ar.total());
  return r;
}

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
