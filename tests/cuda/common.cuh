// Shared helpers of the cuda tests: random inputs and comparisons.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>
#include <couplevae/cuda.cuh>

namespace cvtest {

// n values uniform in (lo, hi) from a fixed stream (never zeros: an unwritten output shows).
inline std::vector<float> random_vec(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::vector<float> v(n);
  couplevae::Rng(seed).uniform(v.data(), n);
  for (auto& x : v) x = float(lo + (hi - lo) * x);
  return v;
}

// max_i |a_i - b_i| / (max_i |b_i| + tiny): the relative error of a against the reference b.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

// n sentences of 1-12 random word ids in [4, vocab) from a fixed stream.
inline std::vector<std::vector<int32_t>> sentences(int vocab, int n, uint64_t seed) {
  couplevae::Rng r(seed);
  std::vector<std::vector<int32_t>> s(n);
  for (auto& x : s) {
    const int len = 1 + int(r.below(12));
    for (int i = 0; i < len; ++i) x.push_back(int32_t(4 + r.below(uint64_t(vocab - 4))));
  }
  return s;
}

}  // namespace cvtest
