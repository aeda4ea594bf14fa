// couplevae/backend/flow_ops.hpp: flow_ops<B>, the kernels of Posterior<Flow<K>>, for every backend.
//
// Planar flows (Rezende & Mohamed 2015; reference.md §3 "Planar flows") with global
// parameters u, w (Z) and a scalar b:
//   u_hat  = u + (m(w.u) - w.u) w / ||w||^2,   m(x) = -1 + softplus(x)   (so w.u_hat = m > -1)
//   f(z)   = z + u_hat tanh(w.z + b)
//   logdet = log(|1 + psi.u_hat| + 1e-8),      psi = (1 - tanh^2(w.z + b)) w
// and the BN-Gaussian base plus the single-sample KL of the NF posterior (§3, §7 VAE-NF):
//   z0 = mu + exp(ls) eps,  log q0 = sum_k (-eps^2/2 - ls - log(2 pi)/2)
//   logq = log q0 - sum_flows logdet,  logp = log N(z_K; 0, I),  kl = logq - logp
// and, for the MI estimator (§13), the (queries x rows) matrix of Gaussian log-densities
//   out[q, j] = log N(x_q; mu_j, exp(ls_j)^2) - logdet_q   (gaussian_log_density).
// Shapes: rows of (rows, Z) matrices, row-major; per-row scalars (rows), all in B's memory.
// Kernels named `_backward` accumulate (+=) into parameter and input gradients unless their
// comment says otherwise. Each entry is a body (backend/launch.hpp) run by launch<B>: one
// index per row (the parameter-vector entries, planar_uhat*, are one index in all; the
// gradients that rows share are accumulated with atomic_add).
#pragma once
#include <cmath>
#include <cstddef>

#include "../core/buffer.hpp"
#include "../core/hd.hpp"
#include "launch.hpp"

namespace couplevae {

namespace flow_kernels {

inline constexpr double logdet_eps = 1e-8;
inline constexpr double half_log_2pi = 0.91893853320467274178;

// softplus(x) = log(1 + e^x), stable for large |x|.
template <class T>
COUPLEVAE_HD inline T softplus(T x) {
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::abs(x)));
}
template <class T>
COUPLEVAE_HD inline T dot(int Z, const T* a, const T* b) {
  T s = 0;
  for (int k = 0; k < Z; ++k) s += a[k] * b[k];
  return s;
}

// One index: uhat (Z) = u + (m(w.u) - w.u) w / ||w||^2 (overwritten).
template <class T>
struct PlanarUhat {
  int Z;
  const T *u, *w;
  T* uhat;
  COUPLEVAE_HD void operator()(size_t) const {
    const T wu = dot(Z, w, u), ww = dot(Z, w, w);
    const T r = (-T(1) + softplus(wu) - wu) / ww;
    for (int k = 0; k < Z; ++k) uhat[k] = u[k] + r * w[k];
  }
};
// One index: du += duhat + (duhat.w) dr/du, dw += r duhat + (duhat.w) dr/dw with
//   r = (m(wu) - wu) / ww,  dr/du = (sigmoid(wu) - 1) w / ww,
//   dr/dw = (sigmoid(wu) - 1) u / ww - 2 (m(wu) - wu) w / ww^2.
template <class T>
struct PlanarUhatBackward {
  int Z;
  const T *u, *w, *duhat;
  T *du, *dw;
  COUPLEVAE_HD void operator()(size_t) const {
    const T wu = dot(Z, w, u), ww = dot(Z, w, w), gw = dot(Z, duhat, w);
    const T gap = -T(1) + softplus(wu) - wu;
    const T r = gap / ww;
    const T dgap = T(1) / (T(1) + std::exp(-wu)) - T(1);  // sigmoid(wu) - 1
    for (int k = 0; k < Z; ++k) {
      du[k] += duhat[k] + gw * dgap * w[k] / ww;
      dw[k] += r * duhat[k] + gw * (dgap * u[k] / ww - T(2) * gap * w[k] / (ww * ww));
    }
  }
};

// Row i: t[i] = tanh(w.z_i + b[0]), z_out_i = z_in_i + uhat t[i], logdet[i] += log(|1 + (1 - t^2) w.uhat| + 1e-8).
template <class T>
struct PlanarForward {
  int Z;
  const T *z_in, *uhat, *w, *b;
  T *t, *z_out, *logdet;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T s = dot(Z, w, uhat);
    const T* x = z_in + i * Z;
    T* y = z_out + i * Z;
    const T ti = std::tanh(b[0] + dot(Z, w, x));
    t[i] = ti;
    for (int k = 0; k < Z; ++k) y[k] = x[k] + uhat[k] * ti;
    logdet[i] += std::log(std::abs(T(1) + (T(1) - ti * ti) * s) + T(logdet_eps));
  }
};
// Row i of the planar backward (see flow_ops::planar_backward).
template <class T>
struct PlanarBackward {
  int Z;
  const T *z_in, *t, *uhat, *w, *dlogdet;
  T *d, *duhat, *dw, *db;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T s = dot(Z, w, uhat);
    const T* x = z_in + i * Z;
    T* g = d + i * Z;
    const T ti = t[i], q = T(1) - ti * ti;
    const T D = T(1) + q * s;
    const T gD = dlogdet ? dlogdet[i] * (D >= T(0) ? T(1) : T(-1)) / (std::abs(D) + T(logdet_eps)) : T(0);
    const T ga = (dot(Z, g, uhat) - T(2) * ti * s * gD) * q;
    for (int k = 0; k < Z; ++k) {
      atomic_add(duhat + k, g[k] * ti + gD * q * w[k]);
      atomic_add(dw + k, ga * x[k] + gD * q * uhat[k]);
      g[k] += ga * w[k];
    }
    atomic_add(db, ga);
  }
};

// Row i: z0 = mu + exp(ls) eps, logq0[i] = sum_k (-eps^2/2 - ls - log(2 pi)/2).
template <class T>
struct BaseSample {
  int Z;
  const T *mu, *ls, *eps;
  T *z0, *logq0;
  COUPLEVAE_HD void operator()(size_t i) const {
    T q = 0;
    for (int k = 0; k < Z; ++k) {
      const size_t o = i * Z + k;
      z0[o] = mu[o] + std::exp(ls[o]) * eps[o];
      q += -T(0.5) * eps[o] * eps[o] - ls[o] - T(half_log_2pi);
    }
    logq0[i] = q;
  }
};
// Element o of (rows, Z): dmu += dz0, dls += dz0 exp(ls) eps - dlogq0[row].
template <class T>
struct BaseSampleBackward {
  int Z;
  const T *ls, *eps, *dz0, *dlogq0;
  T *dmu, *dls;
  COUPLEVAE_HD void operator()(size_t o) const {
    dmu[o] += dz0[o];
    dls[o] += dz0[o] * std::exp(ls[o]) * eps[o] - dlogq0[o / Z];
  }
};

// Row i: logq = logq0 - logdet, logp = sum_k (-zK^2/2 - log(2 pi)/2), kl = logq - logp.
template <class T>
struct Density {
  int Z;
  const T *zK, *logq0, *logdet;
  T *logq, *logp, *kl;
  COUPLEVAE_HD void operator()(size_t i) const {
    T p = 0;
    for (int k = 0; k < Z; ++k) {
      const T v = zK[i * Z + k];
      p += -T(0.5) * v * v - T(half_log_2pi);
    }
    logq[i] = logq0[i] - logdet[i];
    logp[i] = p;
    kl[i] = logq[i] - p;
  }
};
// Row i: dzK = dz + dkl zK, dlogdet = -dkl, dlogq0 = dkl (overwritten; null inputs are 0).
template <class T>
struct DensityBackward {
  int Z;
  const T *zK, *dz, *dkl;
  T *dzK, *dlogdet, *dlogq0;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T w = dkl ? dkl[i] : T(0);
    for (int k = 0; k < Z; ++k) {
      const size_t o = i * Z + k;
      dzK[o] = (dz ? dz[o] : T(0)) + w * zK[o];
    }
    dlogdet[i] = -w;
    dlogq0[i] = w;
  }
};

// Row j of the Gaussians: m = mu, inv_s = exp(-ls) (Z each) and the constant c[j], in double.
template <class T>
struct GaussianRows {
  int Z;
  const T *mu, *ls;
  double *m, *inv_s, *c;
  COUPLEVAE_HD void operator()(size_t j) const {
    double cj = -Z * half_log_2pi;
    for (int k = 0; k < Z; ++k) {
      const size_t o = j * Z + k;
      m[o] = double(mu[o]);
      inv_s[o] = std::exp(-double(ls[o]));
      cj -= double(ls[o]);
    }
    c[j] = cj;
  }
};
// Query q: out[q, j] = c[j] - ||(x_q - m_j) inv_s_j||^2 / 2 - logdet[q] for every j < N.
template <class T>
struct GaussianQuery {
  int N, Z;
  const T *x, *logdet;
  const double *m, *inv_s, *c;
  T* out;
  COUPLEVAE_HD void operator()(size_t q) const {
    const T* xq = x + q * Z;
    const double shift = logdet ? double(logdet[q]) : 0.0;
    for (int j = 0; j < N; ++j) {
      const double* mj = m + size_t(j) * Z;
      const double* sj = inv_s + size_t(j) * Z;
      double s = 0;
      for (int k = 0; k < Z; ++k) {
        const double d = (double(xq[k]) - mj[k]) * sj[k];
        s += d * d;
      }
      out[q * N + j] = T(c[j] - 0.5 * s - shift);
    }
  }
};

}  // namespace flow_kernels

template <class B>
struct flow_ops {
  // uhat (Z) = u + (m(w.u) - w.u) w / ||w||^2 (overwritten).
  template <class T>
  static void planar_uhat(int Z, const T* u, const T* w, T* uhat) {
    launch<B>::for_each(1, flow_kernels::PlanarUhat<T>{Z, u, w, uhat});
  }
  // Backward of planar_uhat (accumulates du, dw; see PlanarUhatBackward).
  template <class T>
  static void planar_uhat_backward(int Z, const T* u, const T* w, const T* duhat, T* du, T* dw) {
    launch<B>::for_each(1, flow_kernels::PlanarUhatBackward<T>{Z, u, w, duhat, du, dw});
  }

  // One planar flow on every row of z_in (rows, Z): t[i] = tanh(w.z_i + b[0]) (overwritten),
  // z_out = z_in + uhat t (overwritten; may alias z_in), logdet[i] += log(|1 + (1 - t^2) w.uhat| + 1e-8).
  template <class T>
  static void planar_forward(int rows, int Z, const T* z_in, const T* uhat, const T* w, const T* b, T* t,
                             T* z_out, T* logdet) {
    launch<B>::for_each(size_t(rows), flow_kernels::PlanarForward<T>{Z, z_in, uhat, w, b, t, z_out, logdet});
  }
  // Backward of planar_forward. d (rows, Z) holds dL/dz_out on entry and dL/dz_in on exit
  // (overwritten in place). dlogdet (rows) is the weight of each row's logdet (nullptr: 0).
  // Accumulates duhat (Z), dw (Z) and db (1). With D = 1 + (1 - t^2) s, s = w.uhat:
  //   gD = dlogdet sign(D) / (|D| + 1e-8),  gt = d.uhat - 2 t s gD,  ga = gt (1 - t^2)
  //   dz_in = d + ga w,  dw += ga z_in + gD (1 - t^2) uhat,  db += ga,
  //   duhat += d t + gD (1 - t^2) w.
  template <class T>
  static void planar_backward(int rows, int Z, const T* z_in, const T* t, const T* uhat, const T* w,
                              const T* dlogdet, T* d, T* duhat, T* dw, T* db) {
    launch<B>::for_each(size_t(rows), flow_kernels::PlanarBackward<T>{Z, z_in, t, uhat, w, dlogdet, d, duhat, dw, db});
  }

  // Base sample on (rows, Z): z0 = mu + exp(ls) eps (overwritten),
  // logq0[i] = sum_k (-eps^2/2 - ls - log(2 pi)/2) = log N(z0; mu, exp(ls)^2) (overwritten).
  template <class T>
  static void base_sample(int rows, int Z, const T* mu, const T* ls, const T* eps, T* z0, T* logq0) {
    launch<B>::for_each(size_t(rows), flow_kernels::BaseSample<T>{Z, mu, ls, eps, z0, logq0});
  }
  // Backward of base_sample (eps is noise): dmu += dz0, dls += dz0 exp(ls) eps - dlogq0[i].
  template <class T>
  static void base_sample_backward(int rows, int Z, const T* ls, const T* eps, const T* dz0, const T* dlogq0,
                                   T* dmu, T* dls) {
    launch<B>::for_each(size_t(rows) * Z, flow_kernels::BaseSampleBackward<T>{Z, ls, eps, dz0, dlogq0, dmu, dls});
  }

  // Densities of the flow posterior (all overwritten, per row):
  //   logq = logq0 - logdet,  logp = sum_k (-zK^2/2 - log(2 pi)/2),  kl = logq - logp.
  template <class T>
  static void density(int rows, int Z, const T* zK, const T* logq0, const T* logdet, T* logq, T* logp, T* kl) {
    launch<B>::for_each(size_t(rows), flow_kernels::Density<T>{Z, zK, logq0, logdet, logq, logp, kl});
  }
  // Log-densities of diagonal Gaussians at query points, every query against every row
  // (the MI estimator's matrix, reference.md §13 "MI"; the base of the flow posterior and
  // Posterior<Gaussian>'s own density):
  //   out[q, j] = sum_k log N(x[q, k]; mu[j, k], exp(ls[j, k])^2) - (logdet ? logdet[q] : 0)
  // x (Q, Z), mu and ls (N, Z), logdet (Q) or nullptr, out (Q, N) overwritten. Direct
  // evaluation of (x - mu) / sigma in double (no expansion into GEMMs, which cancels
  // catastrophically in float when sigma << |x|); O(Q N Z), queries in parallel.
  template <class T>
  static void gaussian_log_density(int Q, int N, int Z, const T* x, const T* mu, const T* ls, const T* logdet,
                                   T* out) {
    Buffer<double, B> m(size_t(N) * Z), inv_s(size_t(N) * Z), c(static_cast<size_t>(N));
    launch<B>::for_each(size_t(N), flow_kernels::GaussianRows<T>{Z, mu, ls, m.data(), inv_s.data(), c.data()});
    launch<B>::for_each_parallel(size_t(Q), size_t(N) * Z,
                                 flow_kernels::GaussianQuery<T>{N, Z, x, logdet, m.data(), inv_s.data(), c.data(), out});
  }

  // Backward of density for a loss with dz on zK (nullptr: 0) and a weight dkl on kl
  // (nullptr: 0). Overwrites dzK = dz + dkl zK, dlogdet = -dkl, dlogq0 = dkl.
  template <class T>
  static void density_backward(int rows, int Z, const T* zK, const T* dz, const T* dkl, T* dzK, T* dlogdet,
                               T* dlogq0) {
    launch<B>::for_each(size_t(rows), flow_kernels::DensityBackward<T>{Z, zK, dz, dkl, dzK, dlogdet, dlogq0});
  }
};

}  // namespace couplevae
