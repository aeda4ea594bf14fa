// couplevae/posterior/bessel.hpp: exponentially scaled modified Bessel functions I_nu.
//
// The vMF normaliser and KL (reference.md §3 "vMF density and KL", "C++ note") need
//   ive(nu, x)  = I_nu(x) e^{-x}                    (scipy.special.ive)
//   A(nu, x)    = I_{nu+1}(x) / I_nu(x)              (the ratio; A_m(kappa) = A(m/2-1, kappa))
// for kappa >= 1 that can grow far past the point (x ~ 700) where I_nu(x) overflows a
// double, and at small x where I_nu(x) underflows for large orders (I_128(1e-3) ~ 1e-631).
// Everything is computed in the log domain, by one of three methods:
//
//   1. x <= 20: the power series (DLMF 10.25.2), positive terms only,
//        log ive(nu, x) = nu ln(x/2) - lgamma(nu + 1) + ln S_nu - x,
//        S_nu = sum_k (x^2/4)^k / (k! (nu+1)_k),   A(nu, x) = (x/2)/(nu+1) S_{nu+1}/S_nu.
//   2. x > 20, nu >= 30: Debye's uniform asymptotic expansion (DLMF 10.41.3),
//        z = x/nu, s = sqrt(1 + z^2), p = 1/s, eta = s + ln(z / (1 + s))
//        log ive(nu, x) = nu (eta - z) - ln(2 pi nu)/2 - ln(s)/2 + ln sum_{k<=13} u_k(p)/nu^k
//      with u_0 = 1, u_{k+1}(p) = p^2 (1 - p^2) u_k'(p)/2 + (1/8) int_0^p (1 - 5t^2) u_k(t) dt
//      (DLMF 10.41.10; the coefficient table is built at compile time). nu (eta - z) is
//      evaluated as nu/(s + z) - nu log1p((1 + 1/(s + z))/z), which cancels nothing for any
//      z; the expansion is uniform in z, so it holds up to x = inf. A = exp(difference of
//      the logs at nu + 1 and nu).
//   3. x > 20, nu < 30: take nu' = nu + n >= 30 (n integer), log ive(nu', x) and A(nu', x)
//      by (2), then run the ratio recurrence downwards,
//        A(mu - 1, x) = 1 / (2 mu / x + A(mu, x)),     mu = nu', nu' - 1, ..., nu + 1,
//      which is stable (|dA(mu-1)/dA(mu)| = A(mu-1)^2 < 1), and
//        log ive(nu, x) = log ive(nu', x) - sum_{mu=nu}^{nu'-1} ln A(mu, x).
//
// Domain: nu >= 0, x > 0 (x = 0 gives log ive = 0 for nu = 0, -inf otherwise, A = 0; x < 0
// gives NaN). Accuracy for x in [1e-3, 1e5], nu in [0, 200] (measured against 40-digit
// values; tests/test_vmf.cpp checks it against an independent long-double series,
// quadrature of the integral representation, closed forms for half-integer orders and
// high-precision values): |error of log ive| < 1e-13 + 2.2e-16 |log ive| (the second term
// is one rounding of the log itself, e.g. log ive(128, 1e-3) = -1453), relative error of A
// below 1e-13. No overflow or NaN for any finite x > 0; bessel_ive itself underflows to 0
// where ive < 1e-308 (use log_bessel_ive there).
#pragma once
#include <array>
#include <cmath>
#include <limits>

#include "../core/hd.hpp"

namespace couplevae {

namespace detail {

inline constexpr int debye_terms = 13;       // u_0 .. u_13
inline constexpr double debye_min_order = 30;  // Debye directly from this order up

using DebyeTable = std::array<std::array<double, 3 * debye_terms + 1>, debye_terms + 1>;

// Coefficients c[k][j] of u_k(p) = sum_j c[k][j] p^j (DLMF 10.41.10 recurrence).
constexpr DebyeTable make_debye_table() {
  DebyeTable c{};
  c[0][0] = 1.0;
  for (int k = 0; k < debye_terms; ++k)
    for (int j = 0; j <= 3 * k; ++j) {
      const double a = c[k][j];
      if (a == 0.0) continue;
      // p^2 (1 - p^2) u'/2 -> (j/2) a (p^{j+1} - p^{j+3});
      // (1/8) int_0^p (1 - 5t^2) a t^j dt -> a (p^{j+1}/(8(j+1)) - 5 p^{j+3}/(8(j+3))).
      c[k + 1][j + 1] += a * (0.5 * j + 1.0 / (8.0 * (j + 1)));
      c[k + 1][j + 3] -= a * (0.5 * j + 5.0 / (8.0 * (j + 3)));
    }
  return c;
}
inline constexpr DebyeTable debye_table = make_debye_table();
#if defined(__CUDACC__)
// The device's copy (constant memory, one per translation unit), read by debye().
static __constant__ DebyeTable debye_table_device = make_debye_table();
#endif
// Coefficient j of u_k, on the host or the device.
COUPLEVAE_HD inline double debye(int k, int j) {
#if defined(__CUDA_ARCH__)
  return debye_table_device[k][j];
#else
  return debye_table[k][j];
#endif
}

// log ive(nu, x) by Debye's expansion; nu > 0, x > 0.
COUPLEVAE_HD inline double log_ive_debye(double nu, double x) {
  const double z = x / nu;
  const double s = std::hypot(1.0, z);
  const double p = 1.0 / s, p2 = p * p;
  // sum_k u_k(p) / nu^k; u_k holds only the powers p^k, p^{k+2}, ..., p^{3k}.
  double sum = 0, inv_nu_k = 1;
  for (int k = 0; k <= debye_terms; ++k) {
    double poly = 0;
    for (int j = 3 * k; j >= k; j -= 2) poly = poly * p2 + debye(k, j);
    sum += poly * std::pow(p, k) * inv_nu_k;
    inv_nu_k /= nu;
  }
  const double eta_minus_z = 1.0 / (s + z) - std::log1p((1.0 + 1.0 / (s + z)) / z);
  constexpr double log_2pi = 1.8378770664093454835606594728112;
  return nu * eta_minus_z - 0.5 * (log_2pi + std::log(nu)) - 0.5 * std::log(s) + std::log(sum);
}

// Power series (DLMF 10.25.2) for x <= series_max_x, positive terms only:
//   I_nu(x) = (x/2)^nu / Gamma(nu+1) * S_nu,  S_nu = sum_k (x^2/4)^k / (k! (nu+1)_k),
//   A(nu, x) = (x/2) / (nu+1) * S_{nu+1} / S_nu.
inline constexpr double series_max_x = 20;

COUPLEVAE_HD inline void log_ive_series(double nu, double x, double& log_ive, double& ratio) {
  const double q = 0.25 * x * x;
  double t0 = 1, t1 = 1, s0 = 1, s1 = 1;
  for (int k = 1; k < 200; ++k) {
    t0 *= q / (k * (nu + k));
    t1 *= q / (k * (nu + 1 + k));
    s0 += t0;
    s1 += t1;
    if (t0 < 1e-17 * s0 && t1 < 1e-17 * s1) break;
  }
  log_ive = nu * std::log(0.5 * x) - std::lgamma(nu + 1) + std::log(s0) - x;
  ratio = 0.5 * x / (nu + 1) * (s1 / s0);
}

}  // namespace detail

// log ive(nu, x) and A(nu, x) = I_{nu+1}(x) / I_nu(x) together (one pass).
struct BesselLogIve {
  double log_ive = 0;  // log(I_nu(x) e^{-x})
  double ratio = 0;    // I_{nu+1}(x) / I_nu(x)
};

COUPLEVAE_HD inline BesselLogIve bessel_log_ive_ratio(double nu, double x) {
  if (!(x > 0)) {
    if (x == 0) return {nu == 0 ? 0.0 : -std::numeric_limits<double>::infinity(), 0.0};
    return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  }
  if (x <= detail::series_max_x) {
    BesselLogIve r;
    detail::log_ive_series(nu, x, r.log_ive, r.ratio);
    return r;
  }
  if (nu >= detail::debye_min_order) {
    const double l0 = detail::log_ive_debye(nu, x), l1 = detail::log_ive_debye(nu + 1, x);
    return {l0, std::exp(l1 - l0)};
  }
  const int n = int(std::ceil(detail::debye_min_order - nu));
  const double top = nu + n;
  const double l_top = detail::log_ive_debye(top, x);
  double a = std::exp(detail::log_ive_debye(top + 1, x) - l_top);  // A(top, x)
  double sum_log = 0;                                              // sum of ln A(mu), mu = nu .. top-1
  for (int i = n; i >= 1; --i) {
    const double mu = nu + i;  // A(mu - 1) from A(mu)
    a = 1.0 / (2.0 * mu / x + a);
    sum_log += std::log(a);
  }
  return {l_top - sum_log, a};
}

// log(I_nu(x) e^{-x}), nu >= 0, x > 0.
COUPLEVAE_HD inline double log_bessel_ive(double nu, double x) { return bessel_log_ive_ratio(nu, x).log_ive; }

// I_nu(x) e^{-x} (underflows to 0 where it is below the double range).
COUPLEVAE_HD inline double bessel_ive(double nu, double x) { return std::exp(log_bessel_ive(nu, x)); }

// A(nu, x) = I_{nu+1}(x) / I_nu(x), in [0, 1).
COUPLEVAE_HD inline double bessel_ratio(double nu, double x) { return bessel_log_ive_ratio(nu, x).ratio; }

}  // namespace couplevae
