// couplevae/posterior/deterministic.hpp: Posterior<Deterministic>, the DAE's point-mass
// bottleneck (reference.md §5 "DAE": e -> Linear(2H -> 32) gives z, no noise).
//
//   z = W e + b          e (B, 2H) -> z (B, Z); W (Z, 2H), b (Z): parameters "<name>.mu.weight",
//                        "<name>.mu.bias" (the same names as Posterior<Gaussian>'s mean head),
//                        PyTorch's default initialisation U(+-1/sqrt(2H))
//   kl = logq = logp = 0 (B, 1)   (no distribution: nothing to regularise or to weigh)
// sample() and mean() compute the same z and draw no noise; deterministic_only has
// Posterior<Gaussian>'s meaning (the module serves only mean()) and, there being no
// other head, changes nothing. `stochastic = false` marks the family as deterministic:
// Coupled<M> rejects it (there is no stochastic path to couple) and evaluation reports no
// likelihood for it.
// forward (sample, mean): requires e (B, in); overwrites c.z, c.kl, c.logq, c.logp.
// backward (sample_backward, mean_backward): accumulates dW += dz^T e, db += sum_rows dz and
//   de += dz W; dkl is ignored (kl is the constant 0).
#pragma once
#include <string>

#include "../backend/cpu/ops.hpp"
#include "../core/buffer.hpp"
#include "../core/context.hpp"
#include "../nn/linear.hpp"
#include "../policies.hpp"
#include "noise.hpp"

namespace couplevae {

template <>
struct Posterior<Deterministic> {
  static constexpr const char* name = "deterministic";
  static constexpr bool stochastic = false;

  template <class T, class B>
  struct module {
    nn::Linear<T, B> mu;
    bool deterministic = false;
    int latent = 0;

    struct Cache {
      Buffer<T, B> z, kl, logq, logp;
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, int in, int Z, bool deterministic_only = false)
        : mu(ar, name + ".mu", in, Z), deterministic(deterministic_only), latent(Z) {}

    // z = W e + b into c.z; kl, logq, logp = 0. Draws no noise.
    void sample(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c, const RowNoise& = {}) const {
      const int n = e.rows;
      mu.forward(ctx, ar, e, c.z.shape(n, latent));
      ops<B>::fill(c.kl.shape(n, 1).data, size_t(n), T(0));
      ops<B>::fill(c.logq.shape(n, 1).data, size_t(n), T(0));
      ops<B>::fill(c.logp.shape(n, 1).data, size_t(n), T(0));
    }
    void sample_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> /*dkl*/, View<T> de,
                         Cache&) const {
      if (dz) mu.backward(ctx, ar, e, dz, de);
    }

    // The deterministic code: the same z (and kl = logq = logp = 0).
    void mean(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c) const { sample(ctx, ar, e, c); }
    void mean_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> de, Cache&) const {
      if (dz) mu.backward(ctx, ar, e, dz, de);
    }
  };
};

}  // namespace couplevae
