// couplevae/backend/vmf_ops.hpp: vmf_ops<B>, the row-wise kernels of Posterior<VMF>, for every backend.
//
// Plain pointer + size signatures over B's memory, row-major (rows, Z) data, one row per
// sentence; every entry is a row body (backend/launch.hpp: a host loop on cpu, one thread
// per row on cuda, the rejection sampler and the Bessel functions included). Kernels whose
// name ends in `_acc` accumulate (+=) into their gradient outputs; the others overwrite.
// Internal arithmetic is double for every scalar type T. Equations (reference.md §3 "vMF", "vMF density and KL"; m = Z):
//
//   head:     mu = m / ||m||,  kappa = softplus(k) + 1
//   envelope: c = sqrt(4 kappa^2 + (m-1)^2),  b_true = (m-1) / (2 kappa + c)  (= (c - 2 kappa)/(m-1)
//             without the cancellation), b_app = (m-1) / (4 kappa), s = clamp(kappa - 10, 0, 1),
//             b = s b_app + (1 - s) b_true   (svae_blend; otherwise b = b_true),
//             a = (m - 1 + 2 kappa + c) / 4,  d = 4ab/(1+b) - (m-1) ln(m-1)
//   Wood:     eps ~ Beta((m-1)/2, (m-1)/2), u ~ U(0,1),  w = (1 - (1+b) eps) / (1 - (1-b) eps),
//             t = 2ab / (1 - (1-b) eps),  accept when (m-1) ln t - t + d > ln u
//   m = 3:    w = 1 + ln(u + (1-u) e^{-2 kappa}) / kappa, u ~ U(0,1)  (exact inverse CDF; the
//             authors' code, via s-vae-pytorch, takes this branch for m = 3)
//   r = sqrt(max(1 - w^2, 1e-10)), with 1 - w^2 = 4 b eps (1-eps) / (1-(1-b) eps)^2 (no cancellation)
//   v = n / ||n||, n ~ N(0, I_{m-1});  x = [w, r v]
//   Householder: y = e1 - mu, uh = y / (||y|| + 1e-5), z = x - 2 (x . uh) uh
//   density:  nu = m/2 - 1, A = I_{nu+1}(kappa)/I_nu(kappa) (posterior/bessel.hpp),
//             log C = nu ln kappa - (m/2) ln 2 pi - kappa - ln ive(nu, kappa),
//             log|S^{m-1}| = ln 2 + (m/2) ln pi - lgamma(m/2),
//             kl = kappa A + log C + log|S^{m-1}|,  logq = kappa mu.z + log C,  logp = -log|S^{m-1}|
//             dkl/dkappa = kappa (1 - A^2) - (m-1) A
//   MI matrix (§13): log_density gives kappa_j mu_j.z_q + log C(kappa_j) for every query q, row j
//
// Randomness. Every row draws from its own counter-based Philox stream (core/rng.hpp's noise
// by row): row i reads the stream of id i, or of ids[i] when the caller names the rows.
// `key` is one value per call (the posterior derives it from the context's generator, or
// takes the caller's RowNoise), so the draws are a pure function of (key, id): the number
// of rejections of one row does not shift the noise of any other row, rows can run in
// parallel (one thread per row on a GPU), and restoring the context's position replays the
// same accepted proposals.
//
// Gradients (the reparameterisation of reference.md §3): eps, u and v are noise; kappa
// reaches z only through the accepted w(eps; b(kappa)) (a and d only decide acceptance),
//   dw/dkappa = -2 eps (1 - eps) / (1 - (1-b) eps)^2 * db/dkappa,
//   db_true/dkappa = -2 b_true / c,  db_app/dkappa = -b_app / kappa,
//   db/dkappa = s db_app + (1-s) db_true + [10 < kappa < 11] (b_app - b_true),
//   m = 3: dw/dkappa = (dL/dkappa) / kappa - L / kappa^2, L = ln(u + (1-u) e^{-2 kappa}),
//   dr/dw = -w / r (0 where the 1e-10 floor is active); mu reaches z through the reflection.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/buffer.hpp"
#include "../core/hd.hpp"
#include "../core/rng.hpp"
#include "../posterior/bessel.hpp"
#include "launch.hpp"

namespace couplevae {

namespace detail {

inline constexpr double vmf_householder_eps = 1e-5;  // uh = (e1 - mu) / (||e1 - mu|| + 1e-5)
inline constexpr double vmf_min_one_minus_w2 = 1e-10;  // r = sqrt(max(1 - w^2, 1e-10))

// Wood's envelope for one kappa (see the header).
struct VmfEnvelope {
  double b = 0, a = 0, d = 0, db = 0;  // db = db/dkappa
};

COUPLEVAE_HD inline VmfEnvelope vmf_envelope(int m, double kappa, bool svae_blend) {
  const double m1 = m - 1;
  const double c = std::sqrt(4 * kappa * kappa + m1 * m1);
  const double b_true = m1 / (2 * kappa + c);
  const double db_true = -2 * b_true / c;
  VmfEnvelope e;
  e.b = b_true;
  e.db = db_true;
  if (svae_blend) {
    const double b_app = m1 / (4 * kappa), db_app = -b_app / kappa;
    const double s = std::clamp(kappa - 10, 0.0, 1.0);
    const double ds = (kappa > 10 && kappa < 11) ? 1.0 : 0.0;
    e.b = s * b_app + (1 - s) * b_true;
    e.db = s * db_app + (1 - s) * db_true + ds * (b_app - b_true);
  }
  e.a = (m1 + 2 * kappa + c) / 4;
  e.d = 4 * e.a * e.b / (1 + e.b) - m1 * std::log(m1);
  return e;
}

// The per-row counter-based stream (see the header).
struct VmfRowStream {
  uint64_t key = 0;
  uint64_t id = 0;
  uint64_t block = 0;
  uint32_t w[4] = {0, 0, 0, 0};
  int used = 4;
  bool has_spare = false;
  double spare = 0;

  COUPLEVAE_HD VmfRowStream(uint64_t k, uint64_t row_id) : key(k), id(row_id) {}
  COUPLEVAE_HD uint32_t word() {
    if (used == 4) {
      row_noise_words(key, id, block++, w);
      used = 0;
    }
    return w[used++];
  }
  COUPLEVAE_HD double uniform() { return uniform_from_bits<double>(word()); }
  // Box-Muller on two words; the second variate of the pair is kept for the next call.
  COUPLEVAE_HD double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    constexpr double two_pi = 6.283185307179586476925286766559;
    const double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare = r * std::sin(two_pi * u2);
    has_spare = true;
    return r * std::cos(two_pi * u2);
  }
  // Gamma(alpha, 1): Marsaglia & Tsang (2000) for alpha >= 1; alpha < 1 through
  // Gamma(alpha) = Gamma(alpha + 1) U^{1/alpha} (the Gamma(alpha + 1) draw first, then U).
  COUPLEVAE_HD double gamma(double alpha) {
    const bool boost = alpha < 1;
    const double d = (boost ? alpha + 1 : alpha) - 1.0 / 3.0, c = 1.0 / std::sqrt(9 * d);
    double g = 0;
    for (;;) {
      const double x = normal();
      double v = 1 + c * x;
      if (v <= 0) continue;
      v = v * v * v;
      const double u = uniform();
      if (u < 1 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1 - v + std::log(v))) {
        g = d * v;
        break;
      }
    }
    return boost ? g * std::exp(std::log(uniform()) / alpha) : g;
  }
  // Beta(alpha, alpha) = X / (X + Y), X, Y ~ Gamma(alpha).
  COUPLEVAE_HD double beta_symmetric(double alpha) {
    const double x = gamma(alpha), y = gamma(alpha);
    return x / (x + y);
  }
};

// The m = 3 inverse CDF: L = ln(u + (1-u) e^{-2 kappa}) (as a log-sum-exp), w = 1 + L/kappa.
COUPLEVAE_HD inline double vmf_w3_log(double u, double kappa) {
  const double p = std::log(u), q = std::log1p(-u) - 2 * kappa;
  const double hi = std::max(p, q), lo = std::min(p, q);
  return hi + std::log1p(std::exp(lo - hi));
}

COUPLEVAE_HD inline double vmf_log_sphere_area(int m) {
  return std::log(2.0) + 0.5 * m * std::log(3.14159265358979323846264338327950) - std::lgamma(0.5 * m);
}

}  // namespace detail

namespace vmf_kernels {

// Row i: mu = m / ||m|| (norm floored at 1e-30); kappa = softplus(k) + 1 when k is given.
template <class T>
struct HeadForward {
  int Z;
  const T *m, *k;
  T *mu, *norm, *kappa;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T* mi = m + i * Z;
    double s = 0;
    for (int j = 0; j < Z; ++j) s += double(mi[j]) * double(mi[j]);
    const double n = std::max(std::sqrt(s), 1e-30);
    norm[i] = T(n);
    for (int j = 0; j < Z; ++j) mu[i * Z + j] = T(double(mi[j]) / n);
    if (k) {
      const double x = double(k[i]);
      kappa[i] = T(std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))) + 1.0);
    }
  }
};
// Row i: dm += (dmu - mu (dmu . mu)) / norm.
template <class T>
struct NormalizeBackward {
  int Z;
  const T *mu, *norm, *dmu;
  T* dm;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T* u = mu + i * Z;
    const T* g = dmu + i * Z;
    double dot = 0;
    for (int j = 0; j < Z; ++j) dot += double(u[j]) * double(g[j]);
    const double inv = 1.0 / double(norm[i]);
    for (int j = 0; j < Z; ++j) dm[i * Z + j] += T((double(g[j]) - double(u[j]) * dot) * inv);
  }
};
// Row i: dk += dkappa sigmoid(k).
template <class T>
struct KappaBackward {
  const T *k, *dkappa;
  T* dk;
  COUPLEVAE_HD void operator()(size_t i) const { dk[i] += T(double(dkappa[i]) / (1.0 + std::exp(-double(k[i])))); }
};

// Row i: Wood's sampler (or the m = 3 inverse CDF) on the row's own stream (id i, or
// ids[i] when given), then v.
template <class T>
struct SampleW {
  int Z, max_attempts;
  const T* kappa;
  uint64_t key;
  const uint64_t* ids;
  bool svae_blend;
  T *w, *r, *eps, *v;
  COUPLEVAE_HD void operator()(size_t i) const {
    const int m = Z;
    const double alpha = 0.5 * (m - 1);
    detail::VmfRowStream st(key, ids ? ids[i] : uint64_t(i));
    const double k = double(kappa[i]);
    double wi, qi, ei;  // w, 1 - w^2, the kept noise
    if (m == 3) {
      ei = st.uniform();
      const double L = detail::vmf_w3_log(ei, k);
      wi = 1 + L / k;
      qi = (-L / k) * (2 + L / k);
    } else {
      const auto env = detail::vmf_envelope(m, k, svae_blend);
      const double b = env.b;
      for (int attempt = 0;; ++attempt) {
        ei = st.beta_symmetric(alpha);
        const double u = st.uniform();
        const double D = 1 - (1 - b) * ei;
        wi = (1 - (1 + b) * ei) / D;
        qi = 4 * b * ei * (1 - ei) / (D * D);
        const double t = 2 * env.a * b / D;
        if ((m - 1) * std::log(t) - t + env.d > std::log(u) || attempt + 1 >= max_attempts) break;
      }
    }
    w[i] = T(wi);
    r[i] = T(std::sqrt(std::max(qi, double(detail::vmf_min_one_minus_w2))));  // a copy: device code cannot bind the host constant
    eps[i] = T(ei);
    T* vi = v + i * (Z - 1);
    double s = 0;
    for (int j = 0; j < Z - 1; ++j) {
      const double n = st.normal();
      vi[j] = T(n);
      s += n * n;
    }
    const double inv = 1.0 / std::max(std::sqrt(s), 1e-300);
    for (int j = 0; j < Z - 1; ++j) vi[j] = T(double(vi[j]) * inv);
  }
};

// Row i: x = [w, r v]; uh = (e1 - mu) / (||e1 - mu|| + 1e-5); z = x - 2 (x . uh) uh.
template <class T>
struct HouseholderForward {
  int Z;
  const T *mu, *w, *r, *v;
  T *uh, *z;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T* u = mu + i * Z;
    T* h = uh + i * Z;
    T* zi = z + i * Z;
    const T* vi = v + i * (Z - 1);
    double n = 0;
    for (int j = 0; j < Z; ++j) {
      const double y = (j == 0 ? 1.0 : 0.0) - double(u[j]);
      n += y * y;
    }
    const double scale = 1.0 / (std::sqrt(n) + detail::vmf_householder_eps);
    double xu = 0;
    for (int j = 0; j < Z; ++j) {
      const double hj = ((j == 0 ? 1.0 : 0.0) - double(u[j])) * scale;
      h[j] = T(hj);
      const double xj = j == 0 ? double(w[i]) : double(r[i]) * double(vi[j - 1]);
      xu += xj * hj;
    }
    for (int j = 0; j < Z; ++j) {
      const double xj = j == 0 ? double(w[i]) : double(r[i]) * double(vi[j - 1]);
      zi[j] = T(xj - 2 * xu * double(h[j]));
    }
  }
};
// Row i: backward of the reflection for dL/dz = dz.
template <class T>
struct HouseholderBackward {
  int Z;
  const T *mu, *w, *r, *v, *uh, *dz;
  T *dmu, *dw, *dr;
  COUPLEVAE_HD double x(size_t i, const T* vi, int j) const {
    return j == 0 ? double(w[i]) : double(r[i]) * double(vi[j - 1]);
  }
  COUPLEVAE_HD void operator()(size_t i) const {
    const T* u = mu + i * Z;
    const T* h = uh + i * Z;
    const T* g = dz + i * Z;
    const T* vi = v + i * (Z - 1);
    double xu = 0, gu = 0, n2 = 0;
    for (int j = 0; j < Z; ++j) {
      xu += x(i, vi, j) * double(h[j]);
      gu += double(g[j]) * double(h[j]);
      const double y = (j == 0 ? 1.0 : 0.0) - double(u[j]);
      n2 += y * y;
    }
    // dL/dx = g - 2 (g . uh) uh
    double dri = 0;
    for (int j = 0; j < Z; ++j) {
      const double dx = double(g[j]) - 2 * gu * double(h[j]);
      if (j == 0)
        dw[i] += T(dx);
      else
        dri += dx * double(vi[j - 1]);
    }
    dr[i] += T(dri);
    // dL/duh = -2 ((x . uh) g + (g . uh) x); uh = y / (n + 1e-5), y = e1 - mu, n = ||y||.
    const double n = std::sqrt(n2), den = n + detail::vmf_householder_eps;
    double duy = 0;  // dL/duh . y
    for (int j = 0; j < Z; ++j) {
      const double du = -2 * (xu * double(g[j]) + gu * x(i, vi, j));
      duy += du * ((j == 0 ? 1.0 : 0.0) - double(u[j]));
    }
    const double k2 = n > 0 ? duy / (n * den * den) : 0.0;
    for (int j = 0; j < Z; ++j) {
      const double du = -2 * (xu * double(g[j]) + gu * x(i, vi, j));
      const double y = (j == 0 ? 1.0 : 0.0) - double(u[j]);
      const double dy = du / den - y * k2;
      dmu[i * Z + j] += T(-dy);
    }
  }
};

// Row i: dkappa += (dw + dr dr/dw) dw/dkappa (the accepted proposal eps held fixed).
template <class T>
struct SampleWBackward {
  int Z;
  const T *kappa, *eps, *w, *r;
  bool svae_blend;
  const T *dw, *dr;
  T* dkappa;
  COUPLEVAE_HD void operator()(size_t i) const {
    const int m = Z;
    const double k = double(kappa[i]), e = double(eps[i]), wi = double(w[i]);
    double dw_dk, q;
    if (m == 3) {
      const double L = detail::vmf_w3_log(e, k);
      const double dL = -2 * std::exp(std::log1p(-e) - 2 * k - L);  // d/dkappa ln(u + (1-u) e^{-2k})
      dw_dk = dL / k - L / (k * k);
      q = (-L / k) * (2 + L / k);
    } else {
      const auto env = detail::vmf_envelope(m, k, svae_blend);
      const double D = 1 - (1 - env.b) * e;
      dw_dk = -2 * e * (1 - e) / (D * D) * env.db;
      q = 4 * env.b * e * (1 - e) / (D * D);
    }
    const double dr_dw = q > detail::vmf_min_one_minus_w2 ? -wi / double(r[i]) : 0.0;
    dkappa[i] += T((double(dw[i]) + double(dr[i]) * dr_dw) * dw_dk);
  }
};

inline constexpr double log_2pi = 1.8378770664093454835606594728112;

// log C_m(kappa) = nu ln kappa - (m/2) ln 2 pi - kappa - ln ive(nu, kappa), nu = m/2 - 1.
COUPLEVAE_HD inline double log_normaliser(int m, double k, const BesselLogIve& bi) {
  return (0.5 * m - 1) * std::log(k) - 0.5 * m * log_2pi - k - bi.log_ive;
}

// Row i: kl, logq = kappa mu.z + log C, logp = -log|S^{m-1}| (logq / logp may be null).
template <class T>
struct Density {
  int Z;
  const T *mu, *kappa, *z;
  T *kl, *logq, *logp;
  COUPLEVAE_HD void operator()(size_t i) const {
    const int m = Z;
    const double log_area = detail::vmf_log_sphere_area(m);
    const double k = double(kappa[i]);
    const BesselLogIve bi = bessel_log_ive_ratio(0.5 * m - 1, k);
    const double log_c = log_normaliser(m, k, bi);
    kl[i] = T(k * bi.ratio + log_c + log_area);
    if (logq) {
      double dot = 0;
      for (int j = 0; j < Z; ++j) dot += double(mu[i * Z + j]) * double(z[i * Z + j]);
      logq[i] = T(k * dot + log_c);
    }
    if (logp) logp[i] = T(-log_area);
  }
};
// Row j: log C(kappa_j) into log_c[j].
template <class T>
struct LogNormaliser {
  int Z;
  const T* kappa;
  double* log_c;
  COUPLEVAE_HD void operator()(size_t j) const {
    const double k = double(kappa[j]);
    log_c[j] = log_normaliser(Z, k, bessel_log_ive_ratio(0.5 * Z - 1, k));
  }
};
// Query q: out[q, j] = kappa_j mu_j.z_q + log_c[j] for every j < N.
template <class T>
struct LogDensityQuery {
  int N, Z;
  const T *mu, *kappa, *z;
  const double* log_c;
  T* out;
  COUPLEVAE_HD void operator()(size_t q) const {
    const T* zq = z + q * Z;
    for (int j = 0; j < N; ++j) {
      const T* mj = mu + size_t(j) * Z;
      double dot = 0;
      for (int k = 0; k < Z; ++k) dot += double(mj[k]) * double(zq[k]);
      out[q * N + j] = T(double(kappa[j]) * dot + log_c[j]);
    }
  }
};
// Row i: dkappa += dkl (kappa (1 - A^2) - (m-1) A).
template <class T>
struct KlBackward {
  int Z;
  const T *kappa, *dkl;
  T* dkappa;
  COUPLEVAE_HD void operator()(size_t i) const {
    const double k = double(kappa[i]), A = bessel_ratio(0.5 * Z - 1, k);
    dkappa[i] += T(double(dkl[i]) * (k * (1 - A) * (1 + A) - (Z - 1) * A));
  }
};

}  // namespace vmf_kernels

template <class B>
struct vmf_ops {
  static constexpr int max_attempts = 1000;  // per row; afterwards the last proposal is kept

  // mu[i] = m[i] / ||m[i]|| (norm[i] = ||m[i]||, floored at 1e-30); when k is given,
  // kappa[i] = softplus(k[i]) + 1.
  template <class T>
  static void head_forward(int rows, int Z, const T* m, const T* k, T* mu, T* norm, T* kappa) {
    launch<B>::for_each(size_t(rows), vmf_kernels::HeadForward<T>{Z, m, k, mu, norm, kappa});
  }
  // dm[i] += (dmu[i] - mu[i] (dmu[i] . mu[i])) / norm[i]
  template <class T>
  static void normalize_backward_acc(int rows, int Z, const T* mu, const T* norm, const T* dmu, T* dm) {
    launch<B>::for_each(size_t(rows), vmf_kernels::NormalizeBackward<T>{Z, mu, norm, dmu, dm});
  }
  // dk[i] += dkappa[i] * sigmoid(k[i])
  template <class T>
  static void kappa_backward_acc(int rows, const T* k, const T* dkappa, T* dk) {
    launch<B>::for_each(size_t(rows), vmf_kernels::KappaBackward<T>{k, dkappa, dk});
  }

  // Draws w (rows), r = sqrt(max(1 - w^2, 1e-10)) (rows), the accepted proposal eps (rows;
  // the uniform u for m = 3) and the unit tangent direction v (rows, Z-1) for every row.
  // ids (may be null: row i is id i) name the rows' streams.
  template <class T>
  static void sample_w(int rows, int Z, const T* kappa, uint64_t key, const uint64_t* ids, bool svae_blend, T* w,
                       T* r, T* eps, T* v) {
    launch<B>::for_each(size_t(rows),
                        vmf_kernels::SampleW<T>{Z, max_attempts, kappa, key, ids, svae_blend, w, r, eps, v});
  }

  // x = [w, r v]; uh = (e1 - mu) / (||e1 - mu|| + 1e-5); z = x - 2 (x . uh) uh.
  template <class T>
  static void householder_forward(int rows, int Z, const T* mu, const T* w, const T* r, const T* v, T* uh, T* z) {
    launch<B>::for_each(size_t(rows), vmf_kernels::HouseholderForward<T>{Z, mu, w, r, v, uh, z});
  }
  // Backward of householder_forward for dL/dz = dz: dmu += dL/dmu (through uh), dw += dL/dx_0,
  // dr += sum_j dL/dx_j v_{j-1} (j >= 1).
  template <class T>
  static void householder_backward_acc(int rows, int Z, const T* mu, const T* w, const T* r, const T* v,
                                       const T* uh, const T* dz, T* dmu, T* dw, T* dr) {
    launch<B>::for_each(size_t(rows), vmf_kernels::HouseholderBackward<T>{Z, mu, w, r, v, uh, dz, dmu, dw, dr});
  }

  // dkappa += (dw + dr * dr/dw) * dw/dkappa (the accepted proposal eps held fixed).
  template <class T>
  static void sample_w_backward_acc(int rows, int Z, const T* kappa, const T* eps, const T* w, const T* r,
                                    bool svae_blend, const T* dw, const T* dr, T* dkappa) {
    launch<B>::for_each(size_t(rows),
                        vmf_kernels::SampleWBackward<T>{Z, kappa, eps, w, r, svae_blend, dw, dr, dkappa});
  }

  // kl, logq = log q(z|x), logp = log p(z) per row (see the header); logq/logp may be null.
  template <class T>
  static void density(int rows, int Z, const T* mu, const T* kappa, const T* z, T* kl, T* logq, T* logp) {
    launch<B>::for_each(size_t(rows), vmf_kernels::Density<T>{Z, mu, kappa, z, kl, logq, logp});
  }
  // The MI estimator's matrix (reference.md §13 "MI"): every query z_q (Q, Z) against every
  // row j of (mu (N, Z) unit rows, kappa (N)), out (Q, N) overwritten:
  //   out[q, j] = log q(z_q | mu_j, kappa_j) = kappa_j mu_j.z_q + log C_Z(kappa_j)
  // with the same arithmetic as density()'s logq (so a row's own sample gives its logq
  // exactly). log C is computed once per row; queries in parallel.
  template <class T>
  static void log_density(int Q, int N, int Z, const T* mu, const T* kappa, const T* z, T* out) {
    Buffer<double, B> log_c(static_cast<size_t>(N));
    launch<B>::for_each(size_t(N), vmf_kernels::LogNormaliser<T>{Z, kappa, log_c.data()});
    launch<B>::for_each_parallel(size_t(Q), size_t(N) * Z,
                                 vmf_kernels::LogDensityQuery<T>{N, Z, mu, kappa, z, log_c.data(), out});
  }

  // dkappa[i] += dkl[i] * (kappa (1 - A^2) - (m-1) A)
  template <class T>
  static void kl_backward_acc(int rows, int Z, const T* kappa, const T* dkl, T* dkappa) {
    launch<B>::for_each(size_t(rows), vmf_kernels::KlBackward<T>{Z, kappa, dkl, dkappa});
  }
};

}  // namespace couplevae
