// couplevae/posterior/vmf.hpp: Posterior<VMF>, the von Mises-Fisher q(z|x) on S^{Z-1}.
//
// Two linear heads on the encoded text e (B, 2H) (reference.md §3 "vMF", CODE s_vae.py):
//   mu    = normalize(W_mu e + b_mu)              (B, Z), unit rows       "<name>.mu"
//   kappa = softplus(W_k e + b_k) + 1             (B, 1), kappa >= 1      "<name>.kappa"
//   sample: z ~ vMF(mu, kappa) by Wood's rejection sampler (Beta proposal, acceptance test,
//           x = [w, sqrt(max(1 - w^2, 1e-10)) v], Householder reflection e1 -> mu with
//           uh = (e1 - mu)/(||e1 - mu|| + 1e-5)); the m = 3 inverse-CDF branch of the authors'
//           code; every equation in backend/vmf_ops.hpp.
//   kl[b]   = KL(vMF(mu, kappa) || U(S^{Z-1})) = kappa A_Z(kappa) + log C_Z(kappa) + log|S^{Z-1}|
//             (analytic, kappa only; A and ive from posterior/bessel.hpp)
//   logq[b] = kappa mu.z + log C_Z(kappa),  logp[b] = -log|S^{Z-1}|   (importance sampling, §13)
//   log_density: out[q, j] = kappa_j mu_j.z_q + log C_Z(kappa_j), every query against every row (MI, §13)
// Deterministic code (the coupled network, paper Appendix B, reference.md §8): z^c = mu, the
// normalised direction; a deterministic module owns only the direction head.
//
// Noise: one call of sample() takes one block of the context's generator and derives from
// it a key for the per-row streams of vmf_ops (so restoring ctx.rng.position replays the
// same accepted proposals, whatever the number of rejections); given a RowNoise
// (posterior/noise.hpp), its key and row ids instead, and the generator is left alone.
// Gradients: kappa gets dL/dz through the accepted w (eps, u, v held fixed) plus dkl times
// dKL/dkappa; mu gets dL/dz through the reflection. backward accumulates into both heads
// and de, given dz (B, Z) (may be empty) and a per-row weight dkl (B) (may be empty).
//
// svae_blend (default false; Config::vmf_blend = true gives reference.md §3): b is blended with the Taylor form
// (m-1)/(4 kappa) for kappa > 10 as in the authors' code. With the blend, a and d still
// assume the exact b, so for kappa > 10 the accepted w follow a vMF of concentration
// a (1 - b) instead of kappa, and the envelope can exceed 1 (m = 32, kappa = 11: E[w] 0.168
// instead of A_32(11) = 0.312; kappa = 50: 0.7294 instead of 0.7348). svae_blend = false
// uses the exact b = (m-1)/(2 kappa + sqrt(4 kappa^2 + (m-1)^2)) (no cancellation, no blend
// needed) and samples vMF(mu, kappa) exactly.
//
// Contract. Shapes: e (B, in), z (B, Z), kl/logq/logp (B, 1); requires Z >= 2 (checked at
// construction). sample() requires a stochastic module, overwrites the cache and ensures
// |z| = 1 up to the 1e-5 of the reflection (|1 - |z|| < 3e-5 unless mu is within 1e-4 of
// e1), kappa >= 1, kl >= 0; it advances ctx.rng.position by exactly one block (none with a
// RowNoise).
// sample_backward()/mean_backward() require the cache of the matching forward on the same
// e and accumulate into the arena's gradients and into de.
#pragma once
#include <string>

#include "../backend/cpu/ops.hpp"
#include "../backend/vmf_ops.hpp"
#include "../core/error.hpp"
#include "../nn/linear.hpp"
#include "../policies.hpp"
#include "bessel.hpp"
#include "noise.hpp"

namespace couplevae {

template <>
struct Posterior<VMF> {
  static constexpr const char* name = "vmf";

  template <class T, class B>
  struct module {
    nn::Linear<T, B> mu, kappa;
    bool deterministic = false;
    int latent = 0;
    bool svae_blend = false;  // true: reference.md §3 as the authors' code (Config::vmf_blend)

    struct Cache {
      Buffer<T, B> m, mu, norm, k, kappa;      // heads: raw and transformed
      Buffer<T, B> w, r, eps, v, uh;           // sampler state (accepted proposal)
      Buffer<T, B> z, kl, logq, logp;          // outputs
      Buffer<T, B> dmu, dm, dw, dr, dkappa, dk;  // backward scratch
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, int in, int Z, bool deterministic_only = false)
        : mu(ar, name + ".mu", in, checked_latent(Z)), deterministic(deterministic_only), latent(Z) {
      if (!deterministic) kappa = nn::Linear<T, B>(ar, name + ".kappa", in, 1);
    }
    static int checked_latent(int Z) {
      require(Z >= 2, "couplevae: Posterior<VMF> needs latent >= 2 (a sphere S^{Z-1} in R^Z); got " +
                          std::to_string(Z));
      return Z;
    }

    // One sample per row: fills c.z, c.kl, c.logq, c.logp.
    void sample(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c, const RowNoise& noise = {}) const {
      require(!deterministic, "couplevae: Posterior<VMF>::sample on a deterministic (coupled) head; use mean()");
      const int n = e.rows, Z = latent;
      View<T> m = c.m.shape(n, Z), k = c.k.shape(n, 1);
      mu.forward(ctx, ar, e, m);
      kappa.forward(ctx, ar, e, k);
      T* dir = c.mu.shape(n, Z).data;
      T* kap = c.kappa.shape(n, 1).data;
      vmf_ops<B>::head_forward(n, Z, m.data, k.data, dir, c.norm.shape(n, 1).data, kap);
      const uint64_t key = noise ? noise.key : take_noise_key(ctx);
      T* w = c.w.shape(n, 1).data;
      T* r = c.r.shape(n, 1).data;
      T* eps = c.eps.shape(n, 1).data;
      T* v = c.v.shape(n, Z - 1).data;
      vmf_ops<B>::sample_w(n, Z, kap, key, noise.ids, svae_blend, w, r, eps, v);
      T* z = c.z.shape(n, Z).data;
      vmf_ops<B>::householder_forward(n, Z, dir, w, r, v, c.uh.shape(n, Z).data, z);
      vmf_ops<B>::density(n, Z, dir, kap, z, c.kl.shape(n, 1).data, c.logq.shape(n, 1).data,
                          c.logp.shape(n, 1).data);
    }

    void sample_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> dkl, View<T> de,
                         Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> dmu = c.dmu.zeros(n, Z), dw = c.dw.zeros(n, 1), dr = c.dr.zeros(n, 1), dkap = c.dkappa.zeros(n, 1);
      if (dz)
        vmf_ops<B>::householder_backward_acc(n, Z, c.mu.data(), c.w.data(), c.r.data(), c.v.data(), c.uh.data(),
                                             dz.data, dmu.data, dw.data, dr.data);
      vmf_ops<B>::sample_w_backward_acc(n, Z, c.kappa.data(), c.eps.data(), c.w.data(), c.r.data(), svae_blend,
                                        dw.data, dr.data, dkap.data);
      if (dkl) vmf_ops<B>::kl_backward_acc(n, Z, c.kappa.data(), dkl.data, dkap.data);
      View<T> dm = c.dm.zeros(n, Z), dk = c.dk.zeros(n, 1);
      vmf_ops<B>::normalize_backward_acc(n, Z, c.mu.data(), c.norm.data(), dmu.data, dm.data);
      vmf_ops<B>::kappa_backward_acc(n, c.k.data(), dkap.data, dk.data);
      mu.backward(ctx, ar, e, dm, de);
      kappa.backward(ctx, ar, e, dk, de);
    }

    // The MI estimator's densities (reference.md §13 "MI"), out (Q, N) overwritten:
    //   out[q, j] = log q(z_q | x_j) = kappa_j mu_j.z_q + log C_Z(kappa_j)   (the normaliser of logq),
    // rows j from `dist` (its mu, kappa: the last sample() on N rows) and queries z_q from
    // `query`'s z (Q rows: the last sample() on that cache, or unit vectors written there).
    // dist and query may be the same cache; then out's diagonal is exactly that sample's logq.
    // Requires a stochastic module; no noise drawn, no gradient.
    void log_density(Context<B>&, const Cache& dist, const Cache& query, View<T> out) const {
      require(!deterministic, "couplevae: Posterior<VMF>::log_density on a deterministic (coupled) head");
      vmf_ops<B>::log_density(out.rows, out.cols, latent, dist.mu.data(), dist.kappa.data(), query.z.data(), out.data);
    }

    // Deterministic code z^c = mu = normalize(W_mu e + b_mu) into c.z.
    void mean(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> m = c.m.shape(n, Z);
      mu.forward(ctx, ar, e, m);
      vmf_ops<B>::head_forward(n, Z, m.data, static_cast<const T*>(nullptr), c.z.shape(n, Z).data,
                               c.norm.shape(n, 1).data, static_cast<T*>(nullptr));
    }
    void mean_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> de, Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> dm = c.dm.zeros(n, Z);
      vmf_ops<B>::normalize_backward_acc(n, Z, c.z.data(), c.norm.data(), dz.data, dm.data);
      mu.backward(ctx, ar, e, dm, de);
    }
  };
};

}  // namespace couplevae
