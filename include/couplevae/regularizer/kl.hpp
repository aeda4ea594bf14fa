// couplevae/regularizer/kl.hpp: Regularizer<KL> and Regularizer<Beta>.
//
//   L_reg = lambda_KL(t) * mean_b kl[b]
// where kl[b] is the posterior's own KL(q(z|x_b) || p(z)) (analytic for the Gaussian) and
// lambda_KL is the annealed weight (regularizer/annealing.hpp) with cap 1 for KL and
// cap = config.beta for Beta (beta-VAE: 0.8 and 1.2 in the paper).
// forward accumulates L_reg into out[0], a double in the backend's memory (model/losses.hpp);
// backward gives the per-row weight dkl[b] = lambda_KL / B (no gradient through z).
#pragma once
#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/context.hpp"
#include "../policies.hpp"
#include "annealing.hpp"

namespace couplevae {

namespace detail {
template <bool UseBeta>
struct AnnealedKL {
  static double cap(const Config& cfg) { return UseBeta ? cfg.beta : 1.0; }
  static double weight(const Config& cfg, long step) {
    return kl_weight(step, cfg.kl_start, cfg.kl_anneal_steps, cap(cfg));
  }
  template <class T, class B>
  struct module {
    const Config* cfg = nullptr;
    struct Cache {
      double weight = 0;
    };
    module() = default;
    module(Arena<T, B>&, const std::string&, const Config& c) : cfg(&c) {}

    // kl: (B, 1) per-row KL; out[0] += L_reg (batch mean, weighted).
    void forward(Context<B>&, long step, View<T> kl, View<T> /*z*/, double* out, Cache& c) const {
      c.weight = weight(*cfg, step);
      ops<B>::sum_into(kl.data, size_t(kl.rows), c.weight / kl.rows, out);
    }
    // dkl[b] += weight / B; dz untouched.
    void backward(Context<B>&, View<T> kl, View<T> /*z*/, View<T> dkl, View<T> /*dz*/, const Cache& c) const {
      ops<B>::add_scalar(dkl.data, size_t(kl.rows), T(c.weight / kl.rows));
    }
  };
};
}  // namespace detail

template <>
struct Regularizer<KL> : detail::AnnealedKL<false> {
  static constexpr const char* name = "kl";
};
template <>
struct Regularizer<Beta> : detail::AnnealedKL<true> {
  static constexpr const char* name = "beta";
};

}  // namespace couplevae
