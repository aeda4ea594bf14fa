// tests/stats.hpp: the Kolmogorov-Smirnov statistic the sampler tests compare draws with.
//
//   ks_statistic(xs, cdf) = sqrt(n) max_x |F_n(x) - cdf(x)|,  F_n the empirical CDF of xs (n draws)
//
// Under the null hypothesis (xs i.i.d. from cdf) it follows the Kolmogorov distribution for
// large n, P(K > x) = 2 sum_k (-1)^(k-1) exp(-2 k^2 x^2): ks_p001 = 1.95 is exceeded with
// probability 2 exp(-7.605) = 0.001 (the tests' seeds are fixed, so a pass is reproducible).
//
// The chi-square checks' critical values, from the distribution function itself:
//
//   gamma_p(a, x) = P(a, x) = x^a e^{-x} / Gamma(a + 1) * sum_k x^k / ((a + 1) ... (a + k)),
//   chi2_critical(df, p) = the x with 1 - P(df/2, x/2) = p (bisection; P rises with x).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

namespace stats {

inline constexpr double ks_p001 = 1.95;  // P(K > ks_p001) = 0.001

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

// The value a chi-square statistic with df degrees of freedom exceeds with probability p.
inline double chi2_critical(int df, double p) {
  long double lo = 0, hi = df + 40 * std::sqrt(2.0L * df) + 100;
  for (int i = 0; i < 200; ++i) {
    const long double mid = (lo + hi) / 2;
    (1 - gamma_p(df / 2.0L, mid / 2) > p ? lo : hi) = mid;
  }
  return double((lo + hi) / 2);
}

}  // namespace stats
