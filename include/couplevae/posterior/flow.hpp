// couplevae/posterior/flow.hpp: Posterior<Flow<K>>, a BN-Gaussian pushed through K planar
// flows (VAE-NF, WAE-NF and their couple versions).
//
// Base (reference.md §3 "Gaussian for the NF variants"): two heads on the encoded text e
// (B, 2H), each Linear followed by BatchNorm1d (training: batch statistics; evaluation:
// running statistics, nn/batch_norm.hpp):
//   mu0 = BN_mu(W_mu e + b_mu),  ls0 = BN_ls(W_ls e + b_ls)  (log sigma),  both (B, Z)
//   z0  = mu0 + exp(ls0) * eps,  eps ~ N(0, I) from ctx.rng or by row (posterior/noise.hpp)
// Flows (§3 "Planar flows"): K planar flows with global parameters u_k, w_k (Z), b_k (1),
// initialised U(-0.01, 0.01):
//   z_{k+1} = z_k + u_hat_k tanh(w_k.z_k + b_k),  u_hat = u + (m(w.u) - w.u) w/||w||^2,
//   m(x) = -1 + softplus(x) (so w.u_hat >= -1 and every flow is invertible),
//   logdet_k = log(|1 + psi_k.u_hat_k| + 1e-8),  psi_k = (1 - tanh^2(w_k.z_k + b_k)) w_k
// Densities and the regulariser's KL (§7 VAE-NF, a single-sample estimate; §13 NF notes):
//   z = z_K,  logq = log N(z0; mu0, sigma0) - sum_k logdet_k,  logp = log N(z_K; 0, I),
//   kl = logq - logp                                                   (B) each
// Because the flows are unconditional, q_K(z_K | x_j) for another x_j needs only z0 (kept
// in the cache) and the same logdet sum (the MI estimator of §13 relies on it):
//   log_density: out[q, j] = log N(z0_q; mu0_j, sigma0_j^2) - logdet_q for every query q, row j.
// Deterministic code (the coupled network, §8 NF row): a deterministic module owns only the
// mu head (+ BN) and its OWN K flows; z^c = flows(mu0), no noise.
//
// Parameters: NAME.mu.{weight,bias}, NAME.mu_bn.{weight,bias,running_mean,running_var},
// NAME.log_sigma.*, NAME.log_sigma_bn.* (stochastic only), NAME.flows.k.{u,w,b}.
// sample/mean overwrite the cache's outputs; sample_backward/mean_backward accumulate (+=)
// into the parameter gradients and de. sample_backward takes dz (B, Z) on z_K and a per-row
// weight dkl (B) on kl (either may be a null view: zero) and differentiates through the
// flows, u_hat's reparameterisation, the noise path z0, BatchNorm and the heads. Both
// backward calls need the cache of the forward call just before them.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "../backend/flow_ops.hpp"
#include "../nn/batch_norm.hpp"
#include "../nn/linear.hpp"
#include "../policies.hpp"
#include "noise.hpp"

namespace couplevae {

// A stack of K planar flows on (rows, Z) codes, with its log-determinant sum.
// forward: zK = f_K(...f_1(z0)) (overwritten; may alias z0), logdet[i] = sum_k logdet_k(i)
// (overwritten). backward: given dzK (rows, Z) and a per-row weight dlogdet (rows, 1) on the
// logdet sum (null view: 0), accumulates into every u, w, b gradient and into dz0.
template <class T, class B>
struct PlanarFlows {
  struct Layer {
    Param u, w, b;
  };
  std::vector<Layer> layers;
  int Z = 0;

  struct Cache {
    Buffer<T, B> uhat;    // (K, Z)
    Buffer<T, B> inputs;  // (K * rows, Z): block k is the input of flow k (block 0 = z0)
    Buffer<T, B> t;       // (K, rows): tanh(w_k.z_k + b_k)
    Buffer<T, B> d, duhat;
    int rows = 0;
  };

  PlanarFlows() = default;
  PlanarFlows(Arena<T, B>& ar, const std::string& name, int latent, int K) : Z(latent) {
    const Init init = Init::uniform_pm(0.01);
    for (int k = 0; k < K; ++k) {
      const std::string p = name + "." + std::to_string(k);
      layers.push_back({ar.add(p + ".u", {Z}, init), ar.add(p + ".w", {Z}, init), ar.add(p + ".b", {1}, init)});
    }
  }

  int size() const { return int(layers.size()); }

  void forward(Context<B>&, Arena<T, B>& ar, View<T> z0, View<T> zK, View<T> logdet, Cache& c) const {
    const int n = z0.rows, K = size();
    c.rows = n;
    View<T> uh = c.uhat.shape(K, Z), in = c.inputs.shape(K * n, Z), t = c.t.shape(K, n);
    ops<B>::copy(z0.data, size_t(n) * Z, in.data);
    ops<B>::fill(logdet.data, size_t(n), T(0));
    for (int k = 0; k < K; ++k) {
      const Layer& L = layers[k];
      flow_ops<B>::planar_uhat(Z, ar.value(L.u), ar.value(L.w), uh.row(k));
      T* out = k + 1 < K ? in.row((k + 1) * n) : zK.data;
      flow_ops<B>::planar_forward(n, Z, in.row(k * n), uh.row(k), ar.value(L.w), ar.value(L.b), t.row(k), out,
                                  logdet.data);
    }
  }

  void backward(Context<B>&, Arena<T, B>& ar, View<T> dzK, View<T> dlogdet, View<T> dz0, Cache& c) const {
    const int n = c.rows, K = size();
    View<T> d = c.d.shape(n, Z);
    if (dzK)
      ops<B>::copy(dzK.data, size_t(n) * Z, d.data);
    else
      ops<B>::fill(d.data, size_t(n) * Z, T(0));
    View<T> uh{c.uhat.data(), K, Z}, in{c.inputs.data(), K * n, Z}, t{c.t.data(), K, n};
    for (int k = K - 1; k >= 0; --k) {
      const Layer& L = layers[k];
      View<T> du = c.duhat.zeros(1, Z);
      flow_ops<B>::planar_backward(n, Z, in.row(k * n), t.row(k), uh.row(k), ar.value(L.w),
                                   dlogdet ? dlogdet.data : static_cast<const T*>(nullptr), d.data, du.data,
                                   ar.grad(L.w), ar.grad(L.b));
      flow_ops<B>::planar_uhat_backward(Z, ar.value(L.u), ar.value(L.w), du.data, ar.grad(L.u), ar.grad(L.w));
    }
    ops<B>::axpy(size_t(n) * Z, T(1), d.data, dz0.data);
  }
};

namespace detail {
// "flow" followed by K in decimal, as a constant string.
template <int K>
constexpr std::array<char, 16> make_flow_name() {
  std::array<char, 16> s{'f', 'l', 'o', 'w'};
  char digits[12] = {};
  int n = 0;
  for (int v = K; v > 0; v /= 10) digits[n++] = char('0' + v % 10);
  for (int i = 0; i < n; ++i) s[4 + i] = digits[n - 1 - i];
  return s;
}
template <int K>
struct flow_name {
  static constexpr std::array<char, 16> value = make_flow_name<K>();
};
}  // namespace detail

template <int K>
struct Posterior<Flow<K>> {
  static constexpr int flows = Flow<K>::flows;  // instantiates Flow<K>'s K >= 1 check
  static constexpr const char* name = detail::flow_name<flows>::value.data();

  template <class T, class B>
  struct module {
    nn::Linear<T, B> mu, ls;
    nn::BatchNorm<T, B> mu_bn, ls_bn;
    PlanarFlows<T, B> flow;
    bool deterministic = false;
    int latent = 0;

    struct Cache {
      // Forward results: mu0, ls0 (after BN), eps, z0, z = z_K, the logdet sum, log q0 and
      // the per-row kl, logq, logp (B, 1).
      Buffer<T, B> mu, ls, eps, z0, z, logdet, logq0, kl, logq, logp;
      Buffer<T, B> mu_pre, ls_pre;  // head outputs before BN
      Buffer<T, B> dz0, dzK, dlogdet, dlogq0, dmu, dls, dmu_pre, dls_pre;
      typename nn::BatchNorm<T, B>::Cache mu_bn, ls_bn;
      typename PlanarFlows<T, B>::Cache flow;
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, int in, int Z, bool deterministic_only = false)
        : mu(ar, name + ".mu", in, Z), mu_bn(ar, name + ".mu_bn", Z), deterministic(deterministic_only), latent(Z) {
      if (!deterministic) {
        ls = nn::Linear<T, B>(ar, name + ".log_sigma", in, Z);
        ls_bn = nn::BatchNorm<T, B>(ar, name + ".log_sigma_bn", Z);
      }
      flow = PlanarFlows<T, B>(ar, name + ".flows", Z, flows);
    }

    // One reparameterised sample per row pushed through the flows: fills c.z (= z_K), c.z0,
    // c.logdet, c.kl, c.logq, c.logp. The noise comes from ctx.rng, or by row when `noise`
    // names the rows.
    void sample(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c, const RowNoise& noise = {}) const {
      const int n = e.rows, Z = latent;
      View<T> mp = c.mu_pre.shape(n, Z), sp = c.ls_pre.shape(n, Z);
      View<T> m = c.mu.shape(n, Z), s = c.ls.shape(n, Z), eps = c.eps.shape(n, Z), z0 = c.z0.shape(n, Z);
      mu.forward(ctx, ar, e, mp);
      mu_bn.forward(ctx, ar, mp, m, c.mu_bn);
      ls.forward(ctx, ar, e, sp);
      ls_bn.forward(ctx, ar, sp, s, c.ls_bn);
      draw_normal(ctx, noise, eps);
      View<T> q0 = c.logq0.shape(n, 1), ld = c.logdet.shape(n, 1), z = c.z.shape(n, Z);
      flow_ops<B>::base_sample(n, Z, m.data, s.data, eps.data, z0.data, q0.data);
      flow.forward(ctx, ar, z0, z, ld, c.flow);
      flow_ops<B>::density(n, Z, z.data, q0.data, ld.data, c.logq.shape(n, 1).data, c.logp.shape(n, 1).data,
                           c.kl.shape(n, 1).data);
    }
    void sample_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> dkl, View<T> de,
                         Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> dzK = c.dzK.shape(n, Z), dld = c.dlogdet.shape(n, 1), dq0 = c.dlogq0.shape(n, 1);
      flow_ops<B>::density_backward(n, Z, c.z.data(), dz ? dz.data : static_cast<const T*>(nullptr),
                                    dkl ? dkl.data : static_cast<const T*>(nullptr), dzK.data, dld.data, dq0.data);
      View<T> dz0 = c.dz0.zeros(n, Z);
      flow.backward(ctx, ar, dzK, dld, dz0, c.flow);
      View<T> dm = c.dmu.zeros(n, Z), ds = c.dls.zeros(n, Z);
      flow_ops<B>::base_sample_backward(n, Z, c.ls.data(), c.eps.data(), dz0.data, dq0.data, dm.data, ds.data);
      View<T> dmp = c.dmu_pre.zeros(n, Z), dsp = c.dls_pre.zeros(n, Z);
      mu_bn.backward(ctx, ar, dm, dmp, c.mu_bn);
      ls_bn.backward(ctx, ar, ds, dsp, c.ls_bn);
      mu.backward(ctx, ar, e, dmp, de);
      ls.backward(ctx, ar, e, dsp, de);
    }

    // The MI estimator's densities (reference.md §13 "MI", §3: the flows are unconditional),
    // out (Q, N) overwritten:
    //   out[q, j] = log q_K(z_q | x_j) = log N(z0_q; mu0_j, diag(sigma0_j^2)) - sum_k logdet_k(q),
    // rows j from `dist` (its BN'd mu0, log sigma0: the last sample() on N rows) and queries
    // from `query` (Q rows): a query is a code z_K = f(z0) given by its base point z0 and its
    // logdet sum (query.z0, query.logdet: those of the last sample() on that cache, or of
    // flow.forward on any z0). dist and query may be the same cache; then out's diagonal is
    // that sample's logq (up to rounding). Requires a stochastic module; no noise, no gradient.
    void log_density(Context<B>&, const Cache& dist, const Cache& query, View<T> out) const {
      require(!deterministic, "couplevae: Posterior<Flow<K>>::log_density on a deterministic (coupled) head");
      flow_ops<B>::gaussian_log_density(out.rows, out.cols, latent, query.z0.data(), dist.mu.data(), dist.ls.data(),
                                        query.logdet.data(), out.data);
    }

    // Deterministic code z^c = flows(mu0) into c.z (also fills c.mu, c.z0 = mu0, c.logdet).
    void mean(Context<B>& ctx, Arena<T, B>& ar, View<T> e, Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> mp = c.mu_pre.shape(n, Z), m = c.mu.shape(n, Z);
      mu.forward(ctx, ar, e, mp);
      mu_bn.forward(ctx, ar, mp, m, c.mu_bn);
      View<T> z0 = c.z0.shape(n, Z);
      ops<B>::copy(m.data, m.size(), z0.data);
      flow.forward(ctx, ar, z0, c.z.shape(n, Z), c.logdet.shape(n, 1), c.flow);
    }
    void mean_backward(Context<B>& ctx, Arena<T, B>& ar, View<T> e, View<T> dz, View<T> de, Cache& c) const {
      const int n = e.rows, Z = latent;
      View<T> dm = c.dmu.zeros(n, Z);
      flow.backward(ctx, ar, dz, View<T>{}, dm, c.flow);
      View<T> dmp = c.dmu_pre.zeros(n, Z);
      mu_bn.backward(ctx, ar, dm, dmp, c.mu_bn);
      mu.backward(ctx, ar, e, dmp, de);
    }
  };
};

}  // namespace couplevae
