// couplevae/eval/dist.hpp: Dist-1 / Dist-2 / Dist-n diversity of generated samples
// (reference.md §13 "Diversity, Dist-1 and Dist-2"; Couple-VAE code utils/evaluations.py
// eval_DIST; paper §5.6).
//
// Input: samples y_1..y_M, each a token sequence (std::string words or integer ids; any
// std::totally_ordered token type). Tokens are compared exactly.
//   Dist-1 = |{distinct unigrams over all samples}| / sum_m |y_m|
//   Dist-2 = |{distinct bigrams over all samples}|  / sum_m max(|y_m| - 1, 0)
//   Dist-n = |{distinct n-grams}| / sum_m max(|y_m| - n + 1, 0)
// Distinct-ness is pooled over all samples, but n-grams are taken within each sample only (no
// n-gram spans two samples). Note: the denominator of Dist-2 is the number of bigrams, as in
// the Couple-VAE code and the paper's wording, not the number of words used by Li et al. (2016).
// Returns fractions in [0, 1]. A denominator of 0 (no samples, only empty samples, or every
// sample shorter than n) gives 0 for that score, never a division by zero.
// In the paper's protocol the samples are 3,200 greedy decodes from the prior (§13), cut at
// <eos>; that is the caller's job (decoding), this header only scores token lists.
// Pure host-side functions: no model, context or backend. Cost O(T log T), T = total tokens.
#pragma once
#include <algorithm>
#include <concepts>
#include <vector>

#include "../core/error.hpp"

namespace couplevae {

struct DistCounts {
  long distinct = 0;  // |distinct n-grams|
  long total = 0;     // number of n-grams
  double value() const { return total > 0 ? double(distinct) / double(total) : 0.0; }
};

struct DistScore {
  double dist1 = 0, dist2 = 0;  // fractions
  long unigrams = 0, distinct_unigrams = 0;
  long bigrams = 0, distinct_bigrams = 0;
};

// Distinct-n counts of the samples (n >= 1). Throws couplevae::Error for n < 1.
template <std::totally_ordered T>
DistCounts distinct_ngrams(const std::vector<std::vector<T>>& samples, int n) {
  require(n >= 1, "distinct_ngrams: n must be >= 1");
  std::vector<const T*> starts;
  for (const auto& s : samples)
    for (size_t i = 0; i + size_t(n) <= s.size(); ++i) starts.push_back(s.data() + i);
  DistCounts out;
  out.total = long(starts.size());
  if (starts.empty()) return out;
  const auto less = [n](const T* a, const T* b) { return std::lexicographical_compare(a, a + n, b, b + n); };
  const auto equal = [n](const T* a, const T* b) { return std::equal(a, a + n, b); };
  std::sort(starts.begin(), starts.end(), less);
  out.distinct = long(std::unique(starts.begin(), starts.end(), equal) - starts.begin());
  return out;
}

// Dist-n as a fraction (0 when there is no n-gram).
template <std::totally_ordered T>
double dist_n(const std::vector<std::vector<T>>& samples, int n) {
  return distinct_ngrams(samples, n).value();
}

// Dist-1 and Dist-2 with their counts.
template <std::totally_ordered T>
DistScore dist_scores(const std::vector<std::vector<T>>& samples) {
  const DistCounts u = distinct_ngrams(samples, 1), b = distinct_ngrams(samples, 2);
  DistScore d;
  d.unigrams = u.total;
  d.distinct_unigrams = u.distinct;
  d.bigrams = b.total;
  d.distinct_bigrams = b.distinct;
  d.dist1 = u.value();
  d.dist2 = b.value();
  return d;
}

}  // namespace couplevae
