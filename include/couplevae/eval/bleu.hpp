// couplevae/eval/bleu.hpp: corpus BLEU exactly as Moses multi-bleu.perl computes it, and the
// reconstruction-BLEU protocol of the paper (reference.md §13 "Reconstruction BLEU").
//
// Input: hypotheses h_s (s = 1..S), each a token sequence, and for every h_s one or more
// references R_s = {r_s1, r_s2, ...}. Tokens are compared exactly (operator==/operator<; no
// lower-casing, no re-tokenisation). Token may be std::string or an integer id (any
// std::totally_ordered type); word and id inputs give the same score for the same sentences.
//
// Per hypothesis s and order n = 1..4 (as multi-bleu.perl):
//   count_h(g)     = occurrences of n-gram g in h_s
//   maxref(g)      = max over r in R_s of occurrences of g in r             (0 if absent)
//   matches_n     += sum_g min(count_h(g), maxref(g))                        (clipped counts)
//   totals_n      += |h_s| - n + 1 (0 if |h_s| < n)                          (hypothesis n-grams)
//   c             += |h_s|
//   r             += the length of r in R_s closest to |h_s| (|len - |h_s|| minimal; on a tie
//                    the shorter one, as multi-bleu.perl)
// Corpus level:
//   p_n   = matches_n / totals_n   (0 when totals_n = 0)
//   BP    = exp(1 - r/c) if c < r, else 1
//   BLEU  = BP * exp((log p1 + log p2 + log p3 + log p4) / 4)   (0 when any p_n = 0: Moses
//           uses log 0 := -9999999999, so exp(...) underflows to exactly 0)
//   BLEU-1 = BP * p1,  BLEU-2 = BP * sqrt(p1 p2)                 (standard cumulative scores)
//   bleu1_paper = BP * p1,  bleu2_paper = BP * p2                (what the Couple-VAE code
//           reports as BLEU-1 / BLEU-2, §13 item 4 and §15 item 10: BP times the n-gram
//           precision, not the geometric mean)
//   ratio = c / r
//
// Units: every double field of BleuScore (p1..p4, bp, ratio, bleu, bleu1, bleu2, bleu1_paper,
// bleu2_paper) is a FRACTION in [0, 1] (ratio and bp are plain numbers). Only the member
// functions whose name ends in `_pct` return percent (100 x the fraction).
//
// Rounding: the authors parsed Moses's printout, in which p_n are percent rounded to 0.1
// ("%.1f") and BP is rounded to 3 decimals ("%.3f"); their BLEU-2 is printed_BP x printed_p2.
// The fields above are exact (unrounded). bleu1_paper_moses_pct()/bleu2_paper_moses_pct()
// reproduce the authors' rounded product (percent), and moses_line() reproduces the
// multi-bleu.perl output line byte for byte (same printf formats). The rounded and exact
// values differ by at most 0.05 x BP + 0.0005 x (100 p_n) (+ 2.5e-5) percentage points, i.e.
// about 0.1 points at worst.
//
// Edge cases (documented, deterministic):
//   - an empty hypothesis contributes 0 n-grams and 0 to c, but its closest reference length
//     to r (as multi-bleu.perl);
//   - r = 0 (all chosen references empty): Moses prints "BLEU = 0, 0/0/0/0 (BP=0, ratio=0,
//     hyp_len=0, ref_len=0)"; here bp = ratio = bleu = all cumulative scores = 0, the p_n are
//     the (zero) precisions, and moses_line() prints that Moses line;
//   - c = 0 < r (every hypothesis empty): multi-bleu.perl dies (division by zero); here
//     bp = 0 (the limit of exp(1 - r/c) as c -> 0), every score is 0, ratio = 0, and
//     moses_line() prints the usual format with those zeros;
//   - every hypothesis needs at least one reference, and hyps and refs must have the same
//     number of entries: otherwise couplevae::Error is thrown (multi-bleu.perl would count a
//     missing reference as length 9999).
//   - multi-bleu.perl splits lines on whitespace; to reproduce it with std::string tokens,
//     tokens must be non-empty and contain no whitespace (true for the corpora's vocabularies).
//
// Reconstruction protocol (§13 items 1-3): each test sentence x_i has K hypotheses (posterior
// samples decoded greedily, K = 10 in the paper), stored sentence-major: hyps[i*K + k] is the
// k-th hypothesis of refs[i]. reconstruction_bleu pairs each hypothesis with its one reference,
// i.e. the Moses convention of writing the reference once per hypothesis line, and scores the
// whole K*N-line corpus once. The reference's n-gram counts are computed once and reused for
// its K hypotheses (same result as repeating it).
//
// Cost: O(sum of lengths x log) with no allocation per n-gram (n-grams are sorted views into
// the input sentences). No model, no context, no backend: a pure host-side function.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace couplevae {

struct BleuScore {
  // Corpus counts, index n-1 for n = 1..4.
  std::array<long, 4> matches{};  // sum of clipped n-gram matches
  std::array<long, 4> totals{};   // sum of hypothesis n-grams
  long hyp_len = 0;               // c: total hypothesis length (tokens)
  long ref_len = 0;               // r: total closest-reference length (tokens)
  long sentences = 0;             // hypothesis lines scored
  // Fractions (see the header comment): p_n = matches_n / totals_n.
  double p1 = 0, p2 = 0, p3 = 0, p4 = 0;
  double bp = 0;     // brevity penalty
  double ratio = 0;  // c / r
  double bleu = 0;   // standard cumulative BLEU-4
  double bleu1 = 0;  // standard cumulative BLEU-1 = BP p1
  double bleu2 = 0;  // standard cumulative BLEU-2 = BP sqrt(p1 p2)
  double bleu1_paper = 0;  // the paper's BLEU-1 = BP p1 (same as bleu1)
  double bleu2_paper = 0;  // the paper's BLEU-2 = BP p2

  // p_n for n = 1..4 (fraction).
  double precision(int n) const {
    require(n >= 1 && n <= 4, "BleuScore::precision: n must be in 1..4");
    return n == 1 ? p1 : n == 2 ? p2 : n == 3 ? p3 : p4;
  }

  // Percent views (100 x the fraction field of the same name).
  double bleu_pct() const { return 100.0 * bleu; }
  double bleu1_pct() const { return 100.0 * bleu1; }
  double bleu2_pct() const { return 100.0 * bleu2; }
  double bleu1_paper_pct() const { return 100.0 * bleu1_paper; }
  double bleu2_paper_pct() const { return 100.0 * bleu2_paper; }

  // The authors' numbers, in percent, from Moses's rounded printout: BP as printed ("%.3f")
  // times p_n in percent as printed ("%.1f").
  double bleu1_paper_moses_pct() const { return printed(bp_arg(), "%.3f") * printed(100.0 * p1_arg(), "%.1f"); }
  double bleu2_paper_moses_pct() const { return printed(bp_arg(), "%.3f") * printed(100.0 * p2_arg(), "%.1f"); }

  // The line multi-bleu.perl prints for this corpus, e.g.
  // "BLEU = 27.12, 60.0/33.3/20.1/12.0 (BP=1.000, ratio=1.050, hyp_len=21, ref_len=20)".
  std::string moses_line() const {
    if (ref_len == 0) return "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)";
    char buf[256];
    std::snprintf(buf, sizeof buf, "BLEU = %.2f, %.1f/%.1f/%.1f/%.1f (BP=%.3f, ratio=%.3f, hyp_len=%ld, ref_len=%ld)",
                  100 * bleu, 100 * p1, 100 * p2, 100 * p3, 100 * p4, bp, ratio, hyp_len, ref_len);
    return buf;
  }

 private:
  // Moses prints all zeros when r = 0.
  double bp_arg() const { return ref_len == 0 ? 0.0 : bp; }
  double p1_arg() const { return ref_len == 0 ? 0.0 : p1; }
  double p2_arg() const { return ref_len == 0 ? 0.0 : p2; }
  static double printed(double v, const char* fmt) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::strtod(buf, nullptr);
  }
};

namespace detail {

// The distinct n-grams of one sentence (n fixed), as pointers to their first token, sorted
// lexicographically, with their counts. Valid while the sentence is alive and unchanged.
template <class T>
struct NgramCounts {
  int n = 0;
  std::vector<std::pair<const T*, long>> items;
};

template <class T>
bool ngram_less(const T* a, const T* b, int n) {
  return std::lexicographical_compare(a, a + n, b, b + n);
}

template <class T>
bool ngram_equal(const T* a, const T* b, int n) {
  return std::equal(a, a + n, b);
}

// Sorted (pointer, count) list of the n-grams of s. `starts` is scratch.
template <class T>
void count_ngrams(const std::vector<T>& s, int n, NgramCounts<T>& out, std::vector<const T*>& starts) {
  out.n = n;
  out.items.clear();
  starts.clear();
  if (long(s.size()) < n) return;
  for (size_t i = 0; i + size_t(n) <= s.size(); ++i) starts.push_back(s.data() + i);
  std::sort(starts.begin(), starts.end(), [n](const T* a, const T* b) { return ngram_less(a, b, n); });
  for (size_t i = 0; i < starts.size();) {
    size_t j = i + 1;
    while (j < starts.size() && ngram_equal(starts[i], starts[j], n)) ++j;
    out.items.emplace_back(starts[i], long(j - i));
    i = j;
  }
}

// Max-over-references counts for every n = 1..4 of one reference set, and the lengths.
template <class T>
struct ReferenceCounts {
  std::array<NgramCounts<T>, 4> maxref;
  std::vector<long> lengths;
};

template <class T>
void build_reference_counts(const std::vector<const std::vector<T>*>& refs, ReferenceCounts<T>& out,
                            std::vector<const T*>& starts, NgramCounts<T>& tmp) {
  out.lengths.clear();
  for (const auto* r : refs) out.lengths.push_back(long(r->size()));
  for (int n = 1; n <= 4; ++n) {
    auto& m = out.maxref[size_t(n - 1)];
    m.n = n;
    m.items.clear();
    if (refs.size() == 1) {
      count_ngrams(*refs[0], n, m, starts);
      continue;
    }
    // Several references: gather every reference's distinct n-grams, sort, keep the max count.
    std::vector<std::pair<const T*, long>> all;
    for (const auto* r : refs) {
      count_ngrams(*r, n, tmp, starts);
      all.insert(all.end(), tmp.items.begin(), tmp.items.end());
    }
    std::sort(all.begin(), all.end(), [n](const auto& a, const auto& b) { return ngram_less(a.first, b.first, n); });
    for (size_t i = 0; i < all.size();) {
      size_t j = i;
      long best = 0;
      while (j < all.size() && ngram_equal(all[i].first, all[j].first, n)) best = std::max(best, all[j++].second);
      m.items.emplace_back(all[i].first, best);
      i = j;
    }
  }
}

// Moses's closest reference length: minimal |len - c|, ties to the shorter.
inline long closest_ref_length(const std::vector<long>& lengths, long c) {
  long best_diff = -1, best_len = 0;
  for (long len : lengths) {
    const long diff = len > c ? len - c : c - len;
    if (best_diff < 0 || diff < best_diff || (diff == best_diff && len < best_len)) {
      best_diff = diff;
      best_len = len;
    }
  }
  return best_len;
}

// Adds one hypothesis line to the corpus counts.
template <class T>
void add_hypothesis(const std::vector<T>& h, const ReferenceCounts<T>& ref, BleuScore& acc,
                    std::vector<const T*>& starts, NgramCounts<T>& hc) {
  const long c = long(h.size());
  acc.hyp_len += c;
  acc.ref_len += closest_ref_length(ref.lengths, c);
  acc.sentences += 1;
  for (int n = 1; n <= 4; ++n) {
    count_ngrams(h, n, hc, starts);
    const auto& items = ref.maxref[size_t(n - 1)].items;
    for (const auto& [g, count] : hc.items) {
      acc.totals[size_t(n - 1)] += count;
      auto it = std::lower_bound(items.begin(), items.end(), g,
                                 [n](const auto& e, const T* key) { return ngram_less(e.first, key, n); });
      if (it != items.end() && ngram_equal(it->first, g, n)) acc.matches[size_t(n - 1)] += std::min(count, it->second);
    }
  }
}

// The corpus-level formulas of multi-bleu.perl from the accumulated counts.
inline void finish_bleu(BleuScore& s) {
  double p[4];
  for (int k = 0; k < 4; ++k) p[k] = s.totals[size_t(k)] > 0 ? double(s.matches[size_t(k)]) / double(s.totals[size_t(k)]) : 0.0;
  s.p1 = p[0];
  s.p2 = p[1];
  s.p3 = p[2];
  s.p4 = p[3];
  const double c = double(s.hyp_len), r = double(s.ref_len);
  if (s.ref_len == 0 || s.hyp_len == 0) {
    // Moses prints zeros for r = 0 and dies for c = 0 < r; the scores are 0 either way.
    s.bp = 0;
    s.ratio = 0;
    s.bleu = s.bleu1 = s.bleu2 = s.bleu1_paper = s.bleu2_paper = 0;
    return;
  }
  s.bp = c < r ? std::exp(1.0 - r / c) : 1.0;
  s.ratio = c / r;
  // Moses: my_log(0) = -9999999999, summed in order 1..4 and divided by 4.
  auto my_log = [](double x) { return x != 0.0 ? std::log(x) : -9999999999.0; };
  s.bleu = s.bp * std::exp((my_log(p[0]) + my_log(p[1]) + my_log(p[2]) + my_log(p[3])) / 4);
  s.bleu1 = s.bp * p[0];
  s.bleu2 = s.bp * std::sqrt(p[0] * p[1]);
  s.bleu1_paper = s.bp * p[0];
  s.bleu2_paper = s.bp * p[1];
}

}  // namespace detail

// Corpus BLEU with several references per hypothesis: refs[s] is the reference set of hyps[s]
// (at least one reference each). Throws couplevae::Error when the sizes differ or a set is empty.
template <std::totally_ordered T>
BleuScore corpus_bleu(const std::vector<std::vector<T>>& hyps, const std::vector<std::vector<std::vector<T>>>& refs) {
  require(hyps.size() == refs.size(), "corpus_bleu: " + std::to_string(hyps.size()) + " hypotheses but " +
                                          std::to_string(refs.size()) + " reference sets");
  BleuScore acc;
  detail::ReferenceCounts<T> rc;
  detail::NgramCounts<T> tmp;
  std::vector<const T*> starts;
  std::vector<const std::vector<T>*> set;
  for (size_t s = 0; s < hyps.size(); ++s) {
    require(!refs[s].empty(), "corpus_bleu: hypothesis " + std::to_string(s) + " has no reference");
    set.clear();
    for (const auto& r : refs[s]) set.push_back(&r);
    detail::build_reference_counts(set, rc, starts, tmp);
    detail::add_hypothesis(hyps[s], rc, acc, starts, tmp);
  }
  detail::finish_bleu(acc);
  return acc;
}

// Corpus BLEU with exactly one reference per hypothesis: refs[s] is the reference of hyps[s].
template <std::totally_ordered T>
BleuScore corpus_bleu(const std::vector<std::vector<T>>& hyps, const std::vector<std::vector<T>>& refs) {
  require(hyps.size() == refs.size(), "corpus_bleu: " + std::to_string(hyps.size()) + " hypotheses but " +
                                          std::to_string(refs.size()) + " references");
  BleuScore acc;
  detail::ReferenceCounts<T> rc;
  detail::NgramCounts<T> tmp;
  std::vector<const T*> starts;
  std::vector<const std::vector<T>*> set(1);
  for (size_t s = 0; s < hyps.size(); ++s) {
    set[0] = &refs[s];
    detail::build_reference_counts(set, rc, starts, tmp);
    detail::add_hypothesis(hyps[s], rc, acc, starts, tmp);
  }
  detail::finish_bleu(acc);
  return acc;
}

// The reconstruction protocol (§13): hyps holds K hypotheses per reference, sentence-major
// (hyps[i*K + k] belongs to refs[i]), K = hyps.size() / refs.size(). Each hypothesis is scored
// against its one reference, as if the reference were written once per hypothesis line.
// Throws couplevae::Error when refs is empty or hyps.size() is not a positive multiple of it.
template <std::totally_ordered T>
BleuScore reconstruction_bleu(const std::vector<std::vector<T>>& hyps, const std::vector<std::vector<T>>& refs) {
  require(!refs.empty(), "reconstruction_bleu: no references");
  require(!hyps.empty() && hyps.size() % refs.size() == 0,
          "reconstruction_bleu: " + std::to_string(hyps.size()) + " hypotheses is not a positive multiple of " +
              std::to_string(refs.size()) + " references");
  const size_t K = hyps.size() / refs.size();
  BleuScore acc;
  detail::ReferenceCounts<T> rc;
  detail::NgramCounts<T> tmp;
  std::vector<const T*> starts;
  std::vector<const std::vector<T>*> set(1);
  for (size_t i = 0; i < refs.size(); ++i) {
    set[0] = &refs[i];
    detail::build_reference_counts(set, rc, starts, tmp);
    for (size_t k = 0; k < K; ++k) detail::add_hypothesis(hyps[i * K + k], rc, acc, starts, tmp);
  }
  detail::finish_bleu(acc);
  return acc;
}

}  // namespace couplevae
