// couplevae/backend/cpu/flow_ops.hpp: flow_ops<cpu>, the kernels of Posterior<Flow<K>>.
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
// Shapes: rows of (rows, Z) matrices, row-major; per-row scalars (rows). Plain pointer + size
// signatures, the ones a flow_ops<cuda> will implement. Kernels named `_backward` accumulate
// (+=) into parameter and input gradients unless their comment says otherwise.
#pragma once
#include <cmath>
#include <type_traits>
#include <vector>

#include "../tags.hpp"

namespace couplevae {

// The primary template is never used: the backend's flow_ops header provides the
// specialisation (this one for cpu).
template <class B>
struct flow_ops {
  static_assert(is_backend_v<B>, "couplevae: flow_ops<B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: flow_ops<cuda> is not visible: include the cuda backend's flow_ops header and "
                "compile this translation unit with nvcc (COUPLEVAE_WITH_CUDA=ON)");
};

template <>
struct flow_ops<cpu> {
  static constexpr double logdet_eps = 1e-8;

  // softplus(x) = log(1 + e^x), stable for large |x|.
  template <class T>
  static T softplus(T x) {
    return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::abs(x)));
  }

  // uhat (Z) = u + (m(w.u) - w.u) w / ||w||^2 (overwritten).
  template <class T>
  static void planar_uhat(int Z, const T* u, const T* w, T* uhat) {
    T wu = 0, ww = 0;
    for (int k = 0; k < Z; ++k) wu += w[k] * u[k], ww += w[k] * w[k];
    const T r = (-T(1) + softplus(wu) - wu) / ww;
    for (int k = 0; k < Z; ++k) uhat[k] = u[k] + r * w[k];
  }
  // Backward of planar_uhat: du += duhat + (duhat.w) dr/du, dw += r duhat + (duhat.w) dr/dw with
  //   r = (m(wu) - wu) / ww,  dr/du = (sigmoid(wu) - 1) w / ww,
  //   dr/dw = (sigmoid(wu) - 1) u / ww - 2 (m(wu) - wu) w / ww^2.
  template <class T>
  static void planar_uhat_backward(int Z, const T* u, const T* w, const T* duhat, T* du, T* dw) {
    T wu = 0, ww = 0, gw = 0;
    for (int k = 0; k < Z; ++k) wu += w[k] * u[k], ww += w[k] * w[k], gw += duhat[k] * w[k];
    const T gap = -T(1) + softplus(wu) - wu;
    const T r = gap / ww;
    const T dgap = T(1) / (T(1) + std::exp(-wu)) - T(1);  // sigmoid(wu) - 1
    for (int k = 0; k < Z; ++k) {
      du[k] += duhat[k] + gw * dgap * w[k] / ww;
      dw[k] += r * duhat[k] + gw * (dgap * u[k] / ww - T(2) * gap * w[k] / (ww * ww));
    }
  }

  // One planar flow on every row of z_in (rows, Z): t[i] = tanh(w.z_i + b[0]) (overwritten),
  // z_out = z_in + uhat t (overwritten; may alias z_in), logdet[i] += log(|1 + (1 - t^2) w.uhat| + 1e-8).
  template <class T>
  static void planar_forward(int rows, int Z, const T* z_in, const T* uhat, const T* w, const T* b, T* t,
                             T* z_out, T* logdet) {
    T s = 0;
    for (int k = 0; k < Z; ++k) s += w[k] * uhat[k];
    for (int i = 0; i < rows; ++i) {
      const T* x = z_in + size_t(i) * Z;
      T* y = z_out + size_t(i) * Z;
      T a = b[0];
      for (int k = 0; k < Z; ++k) a += w[k] * x[k];
      const T ti = std::tanh(a);
      t[i] = ti;
      for (int k = 0; k < Z; ++k) y[k] = x[k] + uhat[k] * ti;
      logdet[i] += std::log(std::abs(T(1) + (T(1) - ti * ti) * s) + T(logdet_eps));
    }
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
    T s = 0;
    for (int k = 0; k < Z; ++k) s += w[k] * uhat[k];
    T sdb = 0;
    for (int i = 0; i < rows; ++i) {
      const T* x = z_in + size_t(i) * Z;
      T* g = d + size_t(i) * Z;
      const T ti = t[i], q = T(1) - ti * ti;
      const T D = T(1) + q * s;
      const T gD = dlogdet ? dlogdet[i] * (D >= T(0) ? T(1) : T(-1)) / (std::abs(D) + T(logdet_eps)) : T(0);
      T gt = -T(2) * ti * s * gD;
      for (int k = 0; k < Z; ++k) gt += g[k] * uhat[k];
      const T ga = gt * q;
      for (int k = 0; k < Z; ++k) {
        duhat[k] += g[k] * ti + gD * q * w[k];
        dw[k] += ga * x[k] + gD * q * uhat[k];
        g[k] += ga * w[k];
      }
      sdb += ga;
    }
    db[0] += sdb;
  }

  // Base sample on (rows, Z): z0 = mu + exp(ls) eps (overwritten),
  // logq0[i] = sum_k (-eps^2/2 - ls - log(2 pi)/2) = log N(z0; mu, exp(ls)^2) (overwritten).
  template <class T>
  static void base_sample(int rows, int Z, const T* mu, const T* ls, const T* eps, T* z0, T* logq0) {
    const T half_log_2pi = T(0.91893853320467274178);
    for (int i = 0; i < rows; ++i) {
      T q = 0;
      for (int k = 0; k < Z; ++k) {
        const size_t o = size_t(i) * Z + k;
        z0[o] = mu[o] + std::exp(ls[o]) * eps[o];
        q += -T(0.5) * eps[o] * eps[o] - ls[o] - half_log_2pi;
      }
      logq0[i] = q;
    }
  }
  // Backward of base_sample (eps is noise): dmu += dz0, dls += dz0 exp(ls) eps - dlogq0[i].
  template <class T>
  static void base_sample_backward(int rows, int Z, const T* ls, const T* eps, const T* dz0, const T* dlogq0,
                                   T* dmu, T* dls) {
    for (int i = 0; i < rows; ++i)
      for (int k = 0; k < Z; ++k) {
        const size_t o = size_t(i) * Z + k;
        dmu[o] += dz0[o];
        dls[o] += dz0[o] * std::exp(ls[o]) * eps[o] - dlogq0[i];
      }
  }

  // Densities of the flow posterior (all overwritten, per row):
  //   logq = logq0 - logdet,  logp = sum_k (-zK^2/2 - log(2 pi)/2),  kl = logq - logp.
  template <class T>
  static void density(int rows, int Z, const T* zK, const T* logq0, const T* logdet, T* logq, T* logp, T* kl) {
    const T half_log_2pi = T(0.91893853320467274178);
    for (int i = 0; i < rows; ++i) {
      T p = 0;
      for (int k = 0; k < Z; ++k) {
        const T v = zK[size_t(i) * Z + k];
        p += -T(0.5) * v * v - half_log_2pi;
      }
      logq[i] = logq0[i] - logdet[i];
      logp[i] = p;
      kl[i] = logq[i] - p;
    }
  }
  // Log-densities of diagonal Gaussians at query points, every query against every row
  // (the MI estimator's matrix, reference.md §13 "MI"; the base of the flow posterior and
  // Posterior<Gaussian>'s own density):
  //   out[q, j] = sum_k log N(x[q, k]; mu[j, k], exp(ls[j, k])^2) - (logdet ? logdet[q] : 0)
  // x (Q, Z), mu and ls (N, Z), logdet (Q) or nullptr, out (Q, N) overwritten. Direct
  // evaluation of (x - mu) / sigma in double (no expansion into GEMMs, which cancels
  // catastrophically in float when sigma << |x|); O(Q N Z), rows of out in parallel.
  template <class T>
  static void gaussian_log_density(int Q, int N, int Z, const T* x, const T* mu, const T* ls, const T* logdet,
                                   T* out) {
    constexpr double half_log_2pi = 0.91893853320467274178;
    std::vector<double> m(size_t(N) * Z), inv_s(size_t(N) * Z), c(static_cast<size_t>(N));
    for (int j = 0; j < N; ++j) {
      double cj = -Z * half_log_2pi;
      for (int k = 0; k < Z; ++k) {
        const size_t o = size_t(j) * Z + k;
        m[o] = double(mu[o]);
        inv_s[o] = std::exp(-double(ls[o]));
        cj -= double(ls[o]);
      }
      c[j] = cj;
    }
#pragma omp parallel for schedule(static) if (size_t(Q) * N * Z > 400000)
    for (int q = 0; q < Q; ++q) {
      const T* xq = x + size_t(q) * Z;
      const double shift = logdet ? double(logdet[q]) : 0.0;
      T* oq = out + size_t(q) * N;
      for (int j = 0; j < N; ++j) {
        const double* mj = m.data() + size_t(j) * Z;
        const double* sj = inv_s.data() + size_t(j) * Z;
        double s = 0;
        for (int k = 0; k < Z; ++k) {
          const double d = (double(xq[k]) - mj[k]) * sj[k];
          s += d * d;
        }
        oq[j] = T(c[j] - 0.5 * s - shift);
      }
    }
  }

  // Backward of density for a loss with dz on zK (nullptr: 0) and a weight dkl on kl
  // (nullptr: 0). Overwrites dzK = dz + dkl zK, dlogdet = -dkl, dlogq0 = dkl.
  template <class T>
  static void density_backward(int rows, int Z, const T* zK, const T* dz, const T* dkl, T* dzK, T* dlogdet,
                               T* dlogq0) {
    for (int i = 0; i < rows; ++i) {
      const T w = dkl ? dkl[i] : T(0);
      for (int k = 0; k < Z; ++k) {
        const size_t o = size_t(i) * Z + k;
        dzK[o] = (dz ? dz[o] : T(0)) + w * zK[o];
      }
      dlogdet[i] = -w;
      dlogq0[i] = w;
    }
  }
};

}  // namespace couplevae
