// tests/stats.hpp: the Kolmogorov-Smirnov statistic the sampler tests compare draws with.
//
//   ks_statistic(xs, cdf) = sqrt(n) max_x |F_n(x) - cdf(x)|,  F_n the empirical CDF of xs (n draws)
//
// Under the null hypothesis (xs i.i.d. from cdf) it follows the Kolmogorov distribution for
// large n, P(K > x) = 2 sum_k (-1)^(k-1) exp(-2 k^2 x^2): ks_p001 = 1.95 is exceeded with
// probability 2 exp(-7.605) = 0.001 (the tests' seeds are fixed, so a pass is reproducible).
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

}  // namespace stats
