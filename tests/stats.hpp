// tests/stats.hpp: the Kolmogorov-Smirnov statistic the sampler tests compare draws with,
// and the critical values of their Kolmogorov-Smirnov and chi-square checks, each computed
// from its distribution's upper tail (the tests' seeds are fixed, so a pass is reproducible).
//
//   ks_statistic(xs, cdf) = sqrt(n) max_x |F_n(x) - cdf(x)|,  F_n the empirical CDF of xs (n draws)
//
// Under the null hypothesis (xs i.i.d. from cdf) it follows the Kolmogorov distribution for
// large n, with upper tail P(K > x) = 2 sum_k (-1)^(k-1) exp(-2 k^2 x^2).
//
//   gamma_p(a, x) = P(a, x) = x^a e^{-x} / Gamma(a + 1) * sum_k x^k / ((a + 1) ... (a + k)),
//   the Gamma(a) CDF; a chi-square statistic with df degrees of freedom has upper tail
//   1 - P(df/2, x/2).
//
//   critical(tail, p) = the x with tail(x) = p, by bisection (every tail here falls with x);
//   ks_p001 = ks_critical(0.001) = 1.9495, chi2_critical(df, p).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

namespace stats {

template <class F>
double ks_statistic(std::vector<double> xs, F cdf) {
  std::sort(xs.begin(), xs.end());
  const double n = double(xs.size());
  double d = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double f = double(cdf(xs[i]));
    d = std::max({d, f - double(i) / n, double(i + 1) / n - f});
  }
  return d * std::sqrt(n);
}

// The regularised lower incomplete gamma function (the Gamma(a) CDF), by its power series.
inline long double gamma_p(long double a, long double x) {
  if (x <= 0) return 0;
  long double t = 1, s = 1;
  for (int k = 1; k < 100000 && t > 1e-21L * s; ++k) s += (t *= x / (a + k));
  return std::exp(a * std::log(x) - x - std::lgamma(a + 1) + std::log(s));
}

// The x in [0, hi] where a falling upper tail equals p (100 halvings: below long double's
// resolution for any hi used here).
template <class Tail>
double critical(Tail tail, double p, long double hi) {
  long double lo = 0;
  for (int i = 0; i < 100; ++i) {
    const long double mid = (lo + hi) / 2;
    (tail(mid) > p ? lo : hi) = mid;
  }
  return double((lo + hi) / 2);
}

// The value a chi-square statistic with df degrees of freedom exceeds with probability p.
inline double chi2_critical(int df, double p) {
  return critical([&](long double x) { return 1 - gamma_p(df / 2.0L, x / 2); }, p,
                  df + 40 * std::sqrt(2.0L * df) + 100);
}

// The value the Kolmogorov distribution (ks_statistic's, for large n) exceeds with probability p.
inline double ks_critical(double p) {
  const auto tail = [](long double x) {
    long double s = 0;
    for (int k = 1; k <= 100; ++k) s += (k % 2 ? 2 : -2) * std::exp(-2.0L * k * k * x * x);
    return s;
  };
  return critical(tail, p, 10);
}

inline const double ks_p001 = ks_critical(0.001);  // P(K > ks_p001) = 0.001

}  // namespace stats
