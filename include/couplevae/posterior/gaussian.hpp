// couplevae/posterior/gaussian.hpp: Posterior<Gaussian>, the diagonal Gaussian q(z|x).
//
// Two linear heads on the encoded text e (B, 2H) (reference.md §3):
//   mu = W_mu e + b_mu,  ls = W_ls e + b_ls  (log sigma, not log variance), both (B, Z)
//   sample:  z = mu + exp(ls) * eps,  eps ~ N(0, I) from the context's generator or by row
//            (posterior/noise.hpp)
//   kl[b]   = KL(q || N(0, I)) = 0.5 sum_k (mu^2 + sigma^2 - 1 - 2 ls)   (analytic)
//   logq[b] = log q(z|x), logp[b] = log N(z; 0, I)                      (importance sampling)
//   log_density: out[q, j] = log N(z_q; mu_j, sigma_j^2), every query against every row (MI, §13)
// Deterministic code (the coupled network, paper Appendix B): z^c = mu; a deterministic
// module owns only the mean head.
// backward accumulates into the heads and de, given dz (B, Z) and a per-row weight dkl (B).
#pragma once
#include <string>

#include "../backend/flow_ops.hpp"
#include "../core/error.hpp"
#include "../nn/linear.hpp"
#include "../policies.hpp"
#include "noise.hpp"

namespace couplevae {

template <>
struct Posterior<Gaussian> {
  static constexpr const char* name = "gaussian";

  template <class T, class B>
  struct module {
    nn::Linear<T, B> mu, ls;
    bool deterministic = false;
    int latent = 0;

    struct Cache {
      Buffer<T, B> mu, ls, eps, z, kl, logq, logp, dmu, dls;
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, int in, int Z, bool deterministic_only = false)
        : mu(ar, name + ".mu", in, Z), deterministic(deterministic_only), latent(Z) {
      if (!deterministic) ls = nn::Linear<T, B>(ar, name + ".log_sigma", in, Z);
    }

    // One reparameterised sample per row: fills c.z, c.kl, c.logq, c.logp. The noise comes
    // from ctx.rng, or by row when `noise` names the rows (posterior/noise.hpp).
    void sample(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c, const RowNoise& noise = {}) const {
      const int n = e.rows;
      View<T> m = c.mu.shape(n, latent), s = c.ls.shape(n, latent), eps = c.eps.shape(n, latent);
      mu.forward(ctx, ar, e, m);
      ls.forward(ctx, ar, e, s);
      draw_normal(ctx, noise, eps);
      ops<B>::gaussian_sample(n, latent, m.data, s.data, eps.data, c.z.shape(n, latent).data,
                              c.kl.shape(n, 1).data, c.logq.shape(n, 1).data, c.logp.shape(n, 1).data);
    }
    void sample_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> dkl, View<T> de,
                         Cache& c) const {
      const int n = e.rows;
      View<T> dm = c.dmu.zeros(n, latent), ds = c.dls.zeros(n, latent);
      ops<B>::gaussian_sample_backward(n, latent, c.mu.data(), c.ls.data(), c.eps.data(), dz.data, dkl.data,
                                       dm.data, ds.data);
      mu.backward(ctx, ar, e, dm, de);
      ls.backward(ctx, ar, e, ds, de);
    }

    // The MI estimator's densities (reference.md §13 "MI"), out (Q, N) overwritten:
    //   out[q, j] = log q(z_q | x_j) = log N(z_q; mu_j, diag(sigma_j^2)),
    // rows j from `dist` (its mu, log sigma: the last sample() on N rows) and queries z_q
    // from `query`'s z (Q rows: the last sample() on that cache, or codes written there).
    // dist and query may be the same cache; then out's diagonal is that sample's logq (up to
    // rounding). Requires a stochastic module; no noise drawn, no gradient.
    void log_density(Context<B>&, const Cache& dist, const Cache& query, View<T> out) const {
      require(!deterministic, "couplevae: Posterior<Gaussian>::log_density on a deterministic (coupled) head");
      flow_ops<B>::gaussian_log_density(out.rows, out.cols, latent, query.z.data(), dist.mu.data(), dist.ls.data(),
                                        static_cast<const T*>(nullptr), out.data);
    }

    // Deterministic code z^c = mu into c.z.
    void mean(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c) const {
      mu.forward(ctx, ar, e, c.z.shape(e.rows, latent));
    }
    void mean_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> de, Cache&) const {
      mu.backward(ctx, ar, e, dz, de);
    }
  };
};

}  // namespace couplevae
