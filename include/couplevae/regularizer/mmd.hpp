// couplevae/regularizer/mmd.hpp: Regularizer<MMD>, the WAE's regulariser (reference.md §7
// table row "WAE", "MMD details", "KL annealing"; §12).
//
//   L_reg = 10 * MMD_IMQ(z, p) + lambda_KL(t) * mean_b kl[b]
// with
//   p       (B, Z) B fresh prior samples N(0, I) drawn from ctx.rng at every forward
//   MMD_IMQ the unbiased U-statistic of MMD^2 with the inverse multiquadric kernel
//           k(x, y) = C / (C + ||x - y||^2), C = 2 Z s (prior variance 1, Z the latent size),
//           summed over s in {0.1, 0.2, 0.5, 1, 2, 5, 10} (backend/mmd_ops.hpp):
//           [sum_{i!=j} k(z_i,z_j) + sum_{i!=j} k(p_i,p_j)] / (B(B-1)) - 2 sum_{i,j} k(z_i,p_j) / B^2
//           defined as 0 when B = 1 (the within-set averages do not exist)
//   lambda_KL(t) = clip((t - start) / steps, 0, 0.8), rounded to 6 decimals
//           (regularizer/annealing.hpp; start = config.kl_start, steps = config.kl_anneal_steps)
// It sees only z (B, Z) and the posterior's per-row kl (B, 1), so it works with any posterior
// (Gaussian's analytic KL, Flow<K>'s single-sample log q - log p, ...).
// forward: requires kl (B, 1), z (B, Z), B >= 1; draws B*Z normals from ctx.rng (also when
//   B = 1, so the generator advances the same way for every batch size); fills the cache
//   (weight = lambda_KL, the prior samples) and accumulates L_reg into out[0], a double in
//   the backend's memory (model/losses.hpp; no host wait).
// backward: accumulates dkl[b] += lambda_KL / B and dz += 10 * dMMD/dz, holding the prior
//   samples of the cache fixed (no gradient flows into them).
#pragma once
#include <string>

#include "../backend/mmd_ops.hpp"
#include "../backend/cpu/ops.hpp"
#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/buffer.hpp"
#include "../core/context.hpp"
#include "../policies.hpp"
#include "annealing.hpp"

namespace couplevae {

template <>
struct Regularizer<MMD> {
  static constexpr const char* name = "mmd";

  // The authors' constants (reference.md §7, §12; CODE `compute_mmd`, `update_lambda_kl`):
  // the MMD term has the fixed weight 10 (Wang & Wang use 10 - lambda_KL instead), and the
  // extra KL term's annealed weight stops at 0.8 (the paper's "beta = 0.8 with annealing").
  static constexpr double mmd_weight = 10.0;
  static constexpr double kl_cap = 0.8;
  // The IMQ kernel's scales s (C = 2 * Z * prior_variance * s), summed over.
  static constexpr int n_scales = 7;
  static constexpr double scales[n_scales] = {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};
  static constexpr double prior_variance = 1.0;

  static double weight(const Config& cfg, long step) {
    return kl_weight(step, cfg.kl_start, cfg.kl_anneal_steps, kl_cap);
  }
  // The kernel constants C_s = 2 * Z * prior_variance * s for latent size Z.
  static void kernel_constants(int Z, double* C) {
    for (int i = 0; i < n_scales; ++i) C[i] = 2.0 * Z * prior_variance * scales[i];
  }

  template <class T, class B>
  struct module {
    const Config* cfg = nullptr;

    struct Cache {
      double weight = 0;  // lambda_KL(step)
      Buffer<T, B> prior; // (B, Z) the prior samples p of the last forward
    };

    module() = default;
    module(Arena<T, B>&, const std::string&, const Config& c) : cfg(&c) {}

    // kl: (B, 1) per-row KL, z: (B, Z); out[0] += L_reg.
    void forward(Context<B>& ctx, long step, View<T> kl, View<T> z, double* out, Cache& c) const {
      const int n = z.rows, Z = z.cols;
      c.weight = weight(*cfg, step);
      View<T> p = c.prior.shape(n, Z);
      ops<B>::normal(ctx.rng, p.data, p.size());
      double C[n_scales];
      kernel_constants(Z, C);
      mmd_ops<B>::imq_mmd_into(n, n, Z, z.data, p.data, C, n_scales, mmd_weight, out);
      ops<B>::sum_into(kl.data, size_t(kl.rows), c.weight / kl.rows, out);
    }

    // dkl[b] += lambda_KL / B; dz += 10 * dMMD/dz (prior samples fixed).
    void backward(Context<B>&, View<T> kl, View<T> z, View<T> dkl, View<T> dz, const Cache& c) const {
      if (dkl) ops<B>::add_scalar(dkl.data, size_t(kl.rows), T(c.weight / kl.rows));
      if (!dz) return;
      double C[n_scales];
      kernel_constants(z.cols, C);
      mmd_ops<B>::imq_mmd_backward(z.rows, z.rows, z.cols, z.data, c.prior.data(), C, n_scales, mmd_weight,
                                   dz.data);
    }
  };
};

}  // namespace couplevae
