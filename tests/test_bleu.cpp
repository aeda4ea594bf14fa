// tests/test_bleu.cpp: corpus BLEU as Moses multi-bleu.perl, the reconstruction protocol and
// Dist-n (reference.md §13 "Reconstruction BLEU", "Diversity"). Expected values are computed
// by hand in the comments; random corpora are checked against a naive, independent
// re-implementation of multi-bleu.perl (std::map of n-gram strings) written in this file.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "couplevae/eval/bleu.hpp"
#include "couplevae/eval/dist.hpp"

using namespace couplevae;

namespace {

using Sent = std::vector<std::string>;
using Sents = std::vector<Sent>;
using Ids = std::vector<std::vector<int32_t>>;

// "a b c" -> {"a", "b", "c"}; "" -> {}.
Sent words(const std::string& line) {
  std::istringstream in(line);
  Sent out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

Sents lines(std::initializer_list<const char*> ls) {
  Sents out;
  for (const char* l : ls) out.push_back(words(l));
  return out;
}

// Single letters a..z -> ids 0..25 (for the id-typed overloads).
Ids to_ids(const Sents& s) {
  Ids out;
  for (const auto& sent : s) {
    std::vector<int32_t> v;
    for (const auto& w : sent) v.push_back(int32_t(w[0] - 'a'));
    out.push_back(v);
  }
  return out;
}

// Naive multi-bleu.perl, line by line as the Perl script: n-grams as space-joined strings in
// std::map, max over references, closest length with ties to the shorter. Returns
// {p1, p2, p3, p4, bp, bleu, c, r}.
struct Naive {
  double p[4], bp, bleu;
  long c, r;
};
Naive naive_bleu(const Sents& hyps, const std::vector<Sents>& refs) {
  long correct[4] = {0, 0, 0, 0}, total[4] = {0, 0, 0, 0}, c = 0, r = 0;
  auto grams = [](const Sent& s, int n) {
    std::map<std::string, long> m;
    for (int i = 0; i + n <= int(s.size()); ++i) {
      std::string g = std::to_string(n);
      for (int w = 0; w < n; ++w) g += " " + s[size_t(i + w)];
      m[g]++;
    }
    return m;
  };
  for (size_t s = 0; s < hyps.size(); ++s) {
    const long len = long(hyps[s].size());
    long cd = 9999, cl = 9999;
    std::map<std::string, long> ref;
    for (const auto& rs : refs[s]) {
      const long l = long(rs.size()), d = std::labs(len - l);
      if (d < cd) {
        cd = d;
        cl = l;
      } else if (d == cd && l < cl) {
        cl = l;
      }
      for (int n = 1; n <= 4; ++n)
        for (const auto& [g, k] : grams(rs, n)) ref[g] = std::max(ref[g], k);
    }
    c += len;
    r += cl;
    for (int n = 1; n <= 4; ++n)
      for (const auto& [g, k] : grams(hyps[s], n)) {
        total[n - 1] += k;
        auto it = ref.find(g);
        if (it != ref.end()) correct[n - 1] += std::min(k, it->second);
      }
  }
  Naive o{};
  double logsum = 0;
  for (int n = 0; n < 4; ++n) {
    o.p[n] = total[n] ? double(correct[n]) / double(total[n]) : 0.0;
    logsum += o.p[n] > 0 ? std::log(o.p[n]) : -9999999999.0;
  }
  o.c = c;
  o.r = r;
  o.bp = c < r ? std::exp(1.0 - double(r) / double(c)) : 1.0;
  o.bleu = o.bp * std::exp(logsum / 4);
  return o;
}

void check_against_naive(const BleuScore& s, const Naive& n) {
  CHECK(s.p1 == doctest::Approx(n.p[0]).epsilon(1e-14));
  CHECK(s.p2 == doctest::Approx(n.p[1]).epsilon(1e-14));
  CHECK(s.p3 == doctest::Approx(n.p[2]).epsilon(1e-14));
  CHECK(s.p4 == doctest::Approx(n.p[3]).epsilon(1e-14));
  CHECK(s.bp == doctest::Approx(n.bp).epsilon(1e-14));
  CHECK(s.bleu == doctest::Approx(n.bleu).epsilon(1e-12));
  CHECK(s.hyp_len == n.c);
  CHECK(s.ref_len == n.r);
}

// Random sentences over a small alphabet so that n-grams repeat and partially match.
Sent random_sentence(std::mt19937& g, int max_len, int alphabet) {
  std::uniform_int_distribution<int> len(0, max_len), tok(0, alphabet - 1);
  Sent s(size_t(len(g)));
  for (auto& w : s) w = std::string(1, char('a' + tok(g)));
  return s;
}

}  // namespace

TEST_CASE("BLEU: two-sentence corpus, clipping inside a sentence, p4 = 0 in one line, hand-computed") {
  // Line 1: hyp "a b c a b" (5), ref "a b c d" (4)
  //   1-grams a2 b2 c1 vs ref a1 b1 c1 d1 -> clipped 1+1+1 = 3 of 5
  //   2-grams ab2 bc ca vs ref ab bc cd   -> 1+1+0 = 2 of 4
  //   3-grams abc bca cab vs abc bcd      -> 1 of 3
  //   4-grams abca bcab vs abcd           -> 0 of 2
  // Line 2: hyp "x y z w" (4), ref "x y z w v" (5): 4/4, 3/3, 2/2, 1/1.
  // Corpus: p = 7/9, 5/7, 3/5, 1/3; c = 9, r = 9 -> BP = 1, ratio 1.
  // BLEU = (7/9 * 5/7 * 3/5 * 1/3)^(1/4) = (1/9)^(1/4) = 1/sqrt(3)
  // BLEU-2 = sqrt(7/9 * 5/7) = sqrt(5)/3; paper BLEU-2 = BP p2 = 5/7.
  const Sents hyps = lines({"a b c a b", "x y z w"});
  const Sents refs = lines({"a b c d", "x y z w v"});
  const BleuScore s = corpus_bleu(hyps, refs);
  CHECK(s.matches == std::array<long, 4>{7, 5, 3, 1});
  CHECK(s.totals == std::array<long, 4>{9, 7, 5, 3});
  CHECK(s.p1 == doctest::Approx(7.0 / 9));
  CHECK(s.p2 == doctest::Approx(5.0 / 7));
  CHECK(s.p3 == doctest::Approx(3.0 / 5));
  CHECK(s.p4 == doctest::Approx(1.0 / 3));
  CHECK(s.precision(2) == s.p2);
  CHECK(s.hyp_len == 9);
  CHECK(s.ref_len == 9);
  CHECK(s.sentences == 2);
  CHECK(s.bp == 1.0);
  CHECK(s.ratio == 1.0);
  CHECK(s.bleu == doctest::Approx(1.0 / std::sqrt(3.0)));
  CHECK(s.bleu_pct() == doctest::Approx(100.0 / std::sqrt(3.0)));
  CHECK(s.bleu1 == doctest::Approx(7.0 / 9));
  CHECK(s.bleu2 == doctest::Approx(std::sqrt(5.0) / 3));
  CHECK(s.bleu1_paper == doctest::Approx(7.0 / 9));
  CHECK(s.bleu2_paper == doctest::Approx(5.0 / 7));
  CHECK(s.bleu2_paper_pct() == doctest::Approx(500.0 / 7));
  // Moses printout: 100/sqrt(3) = 57.735 -> 57.74; 77.78 -> 77.8; 71.43 -> 71.4; 60.0; 33.33 -> 33.3.
  CHECK(s.moses_line() == "BLEU = 57.74, 77.8/71.4/60.0/33.3 (BP=1.000, ratio=1.000, hyp_len=9, ref_len=9)");
  // The authors' rounded BLEU-2 = 1.000 * 71.4 (exact 71.428...).
  CHECK(s.bleu2_paper_moses_pct() == doctest::Approx(71.4).epsilon(1e-12));
  CHECK(s.bleu1_paper_moses_pct() == doctest::Approx(77.8).epsilon(1e-12));

  // Line 1 alone: p4 = 0/2 -> BLEU = 0 although p1..p3 > 0; c = 5 > r = 4 -> BP = 1.
  const BleuScore one = corpus_bleu(Sents{hyps[0]}, Sents{refs[0]});
  CHECK(one.p1 == doctest::Approx(3.0 / 5));
  CHECK(one.p4 == 0.0);
  CHECK(one.bleu == 0.0);
  CHECK(one.bleu2 == doctest::Approx(std::sqrt(3.0 / 5 * 2.0 / 4)));
  CHECK(one.bleu2_paper == doctest::Approx(0.5));
  CHECK(one.moses_line() == "BLEU = 0.00, 60.0/50.0/33.3/0.0 (BP=1.000, ratio=1.250, hyp_len=5, ref_len=4)");
}

TEST_CASE("BLEU: clipping of a repeated word and a zero bigram precision") {
  // hyp "the the the the the the the" (7), ref "the cat is on the mat" (6):
  //   'the' occurs 7 times, the reference has it twice -> p1 = 2/7 (unclipped would be 7/7);
  //   bigram "the the" x6 never in the reference -> p2 = 0 -> BLEU = 0 (Moses log 0 = -9999999999).
  //   c = 7 > r = 6 -> BP = 1, ratio 7/6. BLEU-1 = 2/7, paper BLEU-2 = 0.
  const BleuScore s = corpus_bleu(lines({"the the the the the the the"}), lines({"the cat is on the mat"}));
  CHECK(s.matches[0] == 2);
  CHECK(s.totals[0] == 7);
  CHECK(s.p1 == doctest::Approx(2.0 / 7));
  CHECK(s.p2 == 0.0);
  CHECK(s.totals[1] == 6);
  CHECK(s.bp == 1.0);
  CHECK(s.ratio == doctest::Approx(7.0 / 6));
  CHECK(s.bleu == 0.0);
  CHECK(s.bleu1 == doctest::Approx(2.0 / 7));
  CHECK(s.bleu2 == 0.0);
  CHECK(s.bleu2_paper == 0.0);
  // Tokens are compared exactly: "The" is not "the" (no lower-casing).
  const BleuScore cased = corpus_bleu(lines({"The cat"}), lines({"the cat"}));
  CHECK(cased.p1 == doctest::Approx(0.5));
  CHECK(cased.p2 == 0.0);
}

TEST_CASE("BLEU: brevity penalty for short hypotheses, none for long ones or equal length") {
  // Short: hyps "a b c d", "a b c d"; refs "a b c d e f" (6), "a b c d" (4). Every hypothesis
  // n-gram matches -> p_n = 1. c = 8 < r = 10 -> BP = exp(1 - 10/8) = exp(-0.25), ratio 0.8.
  // BLEU = BLEU-1 = BLEU-2 = paper BLEU-2 = exp(-0.25) = 0.7788007831.
  const BleuScore s = corpus_bleu(lines({"a b c d", "a b c d"}), lines({"a b c d e f", "a b c d"}));
  CHECK(s.p1 == 1.0);
  CHECK(s.p4 == 1.0);
  CHECK(s.hyp_len == 8);
  CHECK(s.ref_len == 10);
  CHECK(s.ratio == doctest::Approx(0.8));
  CHECK(s.bp == doctest::Approx(std::exp(-0.25)));
  CHECK(s.bleu == doctest::Approx(std::exp(-0.25)));
  CHECK(s.bleu1 == doctest::Approx(std::exp(-0.25)));
  CHECK(s.bleu2 == doctest::Approx(std::exp(-0.25)));
  CHECK(s.bleu2_paper == doctest::Approx(std::exp(-0.25)));
  CHECK(s.moses_line() == "BLEU = 77.88, 100.0/100.0/100.0/100.0 (BP=0.779, ratio=0.800, hyp_len=8, ref_len=10)");
  // Authors' rounding: 0.779 * 100.0 = 77.9 against the exact 77.880...
  CHECK(s.bleu2_paper_moses_pct() == doctest::Approx(77.9).epsilon(1e-12));
  CHECK(s.bleu2_paper_pct() == doctest::Approx(77.88007830714049));

  // Long: hyp "a b c d e f" (6), ref "a b c d" (4): c > r -> BP = 1.
  //   p = 4/6, 3/5, 2/4, 1/3 -> BLEU = (4*3*2*1 / (6*5*4*3))^(1/4) = (1/15)^(1/4) = 0.508133...
  const BleuScore l = corpus_bleu(lines({"a b c d e f"}), lines({"a b c d"}));
  CHECK(l.bp == 1.0);
  CHECK(l.ratio == doctest::Approx(1.5));
  CHECK(l.p1 == doctest::Approx(4.0 / 6));
  CHECK(l.p2 == doctest::Approx(3.0 / 5));
  CHECK(l.p3 == doctest::Approx(2.0 / 4));
  CHECK(l.p4 == doctest::Approx(1.0 / 3));
  CHECK(l.bleu == doctest::Approx(std::pow(1.0 / 15, 0.25)));

  // Equal length (c = r) -> BP = 1 exactly.
  CHECK(corpus_bleu(lines({"a b x"}), lines({"a b c"})).bp == 1.0);
}

TEST_CASE("BLEU: perfect match is 100, for words and for ids") {
  const Sents s = lines({"a b c d e", "f g h i", "j k l m n o"});
  const BleuScore w = corpus_bleu(s, s);
  CHECK(w.bleu == 1.0);
  CHECK(w.bleu_pct() == 100.0);
  CHECK(w.bleu1_pct() == 100.0);
  CHECK(w.bleu2_pct() == 100.0);
  CHECK(w.bleu2_paper_pct() == 100.0);
  CHECK(w.bleu2_paper_moses_pct() == 100.0);
  CHECK(w.moses_line() == "BLEU = 100.00, 100.0/100.0/100.0/100.0 (BP=1.000, ratio=1.000, hyp_len=15, ref_len=15)");
  const Ids ids = to_ids(s);
  const BleuScore i = corpus_bleu(ids, ids);
  CHECK(i.bleu == 1.0);
  CHECK(i.hyp_len == 15);
}

TEST_CASE("BLEU: several references, max counts over references and the closest length (ties to the shorter)") {
  // hyp "a a b c d" (5); refs R1 = "a b c d e f g" (7), R2 = "a a x" (3).
  // Lengths: |7-5| = |3-5| = 2, a tie -> the shorter, r = 3; c = 5 > 3 -> BP = 1.
  // 1-grams a2 b c d: maxref(a) = max(1, 2) = 2 -> 5/5 (R1 alone would clip a to 1: 4/5).
  // 2-grams aa ab bc cd: aa from R2, the rest from R1 -> 4/4.
  // 3-grams aab abc bcd: abc, bcd in R1 -> 2/3.   4-grams aabc abcd: abcd -> 1/2.
  // BLEU = (1 * 1 * 2/3 * 1/2)^(1/4) = (1/3)^(1/4) = 0.759835...
  const Sents hyps = lines({"a a b c d"});
  const std::vector<Sents> refs = {lines({"a b c d e f g", "a a x"})};
  const BleuScore s = corpus_bleu(hyps, refs);
  CHECK(s.ref_len == 3);
  CHECK(s.bp == 1.0);
  CHECK(s.p1 == 1.0);
  CHECK(s.p2 == 1.0);
  CHECK(s.p3 == doctest::Approx(2.0 / 3));
  CHECK(s.p4 == doctest::Approx(0.5));
  CHECK(s.bleu == doctest::Approx(std::pow(1.0 / 3, 0.25)));
  // Order of the references does not matter (the tie goes to the shorter, not the first).
  const BleuScore swapped = corpus_bleu(hyps, std::vector<Sents>{lines({"a a x", "a b c d e f g"})});
  CHECK(swapped.ref_len == 3);
  CHECK(swapped.bleu == s.bleu);
  // R1 alone: r = 7, BP = exp(1 - 7/5) = exp(-0.4); p = 4/5, 3/4 (aa unmatched), 2/3, 1/2.
  const BleuScore r1 = corpus_bleu(hyps, lines({"a b c d e f g"}));
  CHECK(r1.ref_len == 7);
  CHECK(r1.bp == doctest::Approx(std::exp(-0.4)));
  CHECK(r1.p1 == doctest::Approx(0.8));
  CHECK(r1.p2 == doctest::Approx(0.75));
  CHECK(r1.bleu == doctest::Approx(std::exp(-0.4) * std::pow(0.8 * 0.75 * (2.0 / 3) * 0.5, 0.25)));

  // Closest without a tie: hyp "a b c d e" (5), refs of lengths 3 and 6: |3-5| = 2 > |6-5| = 1
  // -> r = 6 (neither the shortest nor the first). c = 5 < 6 -> BP = exp(1 - 6/5) = exp(-0.2);
  // every hypothesis n-gram is in the 6-token reference -> p_n = 1, BLEU = exp(-0.2).
  const BleuScore cl = corpus_bleu(lines({"a b c d e"}), std::vector<Sents>{lines({"a b c", "a b c d e f"})});
  CHECK(cl.ref_len == 6);
  CHECK(cl.bp == doctest::Approx(std::exp(-0.2)));
  CHECK(cl.p4 == 1.0);
  CHECK(cl.bleu == doctest::Approx(std::exp(-0.2)));
}

TEST_CASE("BLEU: random corpora agree with a naive multi-bleu.perl re-implementation") {
  std::mt19937 g(2024);
  for (int trial = 0; trial < 30; ++trial) {
    const int S = 1 + trial % 7, max_refs = 1 + trial % 3, alphabet = 2 + trial % 4;
    Sents hyps;
    std::vector<Sents> refs;
    for (int s = 0; s < S; ++s) {
      hyps.push_back(random_sentence(g, 9, alphabet));
      Sents set;
      const int nr = 1 + int(g() % unsigned(max_refs));
      for (int k = 0; k < nr; ++k) set.push_back(random_sentence(g, 9, alphabet));
      refs.push_back(set);
    }
    const BleuScore s = corpus_bleu(hyps, refs);
    check_against_naive(s, naive_bleu(hyps, refs));
    // Ids give the same score as words.
    std::vector<Ids> idrefs;
    for (const auto& set : refs) idrefs.push_back(to_ids(set));
    const BleuScore si = corpus_bleu(to_ids(hyps), idrefs);
    CHECK(si.matches == s.matches);
    CHECK(si.totals == s.totals);
    CHECK(si.ref_len == s.ref_len);
    CHECK(si.bleu == s.bleu);
  }
}

TEST_CASE("reconstruction_bleu: K hypotheses per reference, the Moses convention of repeated references") {
  // Hand case, K = 2: ref "a b c d"; hyps "a b c d" and "a b".
  //   line 1: 4/4, 3/3, 2/2, 1/1, c 4, r 4.   line 2: 2/2, 1/1, 0/0, 0/0, c 2, r 4.
  //   Corpus: p_n = 6/6, 4/4, 2/2, 1/1 = 1; c = 6, r = 8 -> BP = exp(1 - 8/6) = exp(-1/3).
  //   BLEU = exp(-1/3) = 0.7165; the mean of per-line BLEUs would be (1 + 0)/2: corpus-level differs.
  const BleuScore h = reconstruction_bleu(lines({"a b c d", "a b"}), lines({"a b c d"}));
  CHECK(h.totals == std::array<long, 4>{6, 4, 2, 1});
  CHECK(h.matches == std::array<long, 4>{6, 4, 2, 1});
  CHECK(h.hyp_len == 6);
  CHECK(h.ref_len == 8);
  CHECK(h.bleu == doctest::Approx(std::exp(-1.0 / 3)));

  // K = 10 posterior samples per reference, sentence-major: the same as corpus_bleu with each
  // reference repeated 10 times, and the same precisions as summing per-pair counts.
  std::mt19937 g(7);
  const int N = 5, K = 10;
  Sents refs, hyps, repeated;
  for (int i = 0; i < N; ++i) refs.push_back(random_sentence(g, 8, 3));
  for (int i = 0; i < N; ++i)
    for (int k = 0; k < K; ++k) {
      hyps.push_back(random_sentence(g, 8, 3));
      repeated.push_back(refs[size_t(i)]);
    }
  const BleuScore rec = reconstruction_bleu(hyps, refs);
  const BleuScore rep = corpus_bleu(hyps, repeated);
  CHECK(rec.matches == rep.matches);
  CHECK(rec.totals == rep.totals);
  CHECK(rec.bleu == rep.bleu);
  CHECK(rec.sentences == N * K);
  std::array<long, 4> m{}, t{};
  long c = 0, r = 0;
  for (int i = 0; i < N; ++i)
    for (int k = 0; k < K; ++k) {
      const Naive one = naive_bleu(Sents{hyps[size_t(i * K + k)]}, std::vector<Sents>{Sents{refs[size_t(i)]}});
      const BleuScore pair = corpus_bleu(Sents{hyps[size_t(i * K + k)]}, Sents{refs[size_t(i)]});
      CHECK(pair.hyp_len == one.c);
      CHECK(pair.ref_len == one.r);
      for (int n = 0; n < 4; ++n) {
        m[size_t(n)] += pair.matches[size_t(n)];
        t[size_t(n)] += pair.totals[size_t(n)];
      }
      c += one.c;
      r += one.r;
    }
  CHECK(rec.matches == m);
  CHECK(rec.totals == t);
  CHECK(rec.hyp_len == c);
  CHECK(rec.ref_len == r);
  for (int n = 1; n <= 4; ++n) CHECK(rec.precision(n) == doctest::Approx(double(m[size_t(n - 1)]) / double(t[size_t(n - 1)])));
  std::vector<Sents> rep_sets;
  for (const auto& s : repeated) rep_sets.push_back(Sents{s});
  check_against_naive(rec, naive_bleu(hyps, rep_sets));
  // Ids.
  const BleuScore rid = reconstruction_bleu(to_ids(hyps), to_ids(refs));
  CHECK(rid.bleu == rec.bleu);
}

TEST_CASE("BLEU: empty hypotheses, empty corpora and invalid input") {
  // An empty hypothesis adds 0 n-grams and 0 length but its reference length (Moses):
  // hyps "", "a b c d"; refs "a b", "a b c d" -> p_n = 1, c = 4, r = 6, BP = exp(1 - 6/4) = exp(-0.5).
  const BleuScore e = corpus_bleu(lines({"", "a b c d"}), lines({"a b", "a b c d"}));
  CHECK(e.totals == std::array<long, 4>{4, 3, 2, 1});
  CHECK(e.hyp_len == 4);
  CHECK(e.ref_len == 6);
  CHECK(e.bleu == doctest::Approx(std::exp(-0.5)));

  // All hypotheses empty (Moses would divide by zero): every score 0, no NaN.
  const BleuScore z = corpus_bleu(lines({"", ""}), lines({"a b", "c"}));
  CHECK(z.hyp_len == 0);
  CHECK(z.ref_len == 3);
  CHECK(z.bp == 0.0);
  CHECK(z.bleu == 0.0);
  CHECK(z.bleu2_paper == 0.0);
  CHECK(z.ratio == 0.0);

  // No lines at all / empty references: Moses's zero line.
  const BleuScore none = corpus_bleu(Sents{}, Sents{});
  CHECK(none.bleu == 0.0);
  CHECK(none.moses_line() == "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)");
  CHECK(none.bleu2_paper_moses_pct() == 0.0);
  const BleuScore eref = corpus_bleu(lines({"a b"}), lines({""}));
  CHECK(eref.ref_len == 0);
  CHECK(eref.p1 == 0.0);
  CHECK(eref.bleu == 0.0);
  CHECK(eref.moses_line() == "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)");

  CHECK_THROWS_AS(corpus_bleu(lines({"a", "b"}), lines({"a"})), Error);
  CHECK_THROWS_AS(corpus_bleu(lines({"a"}), std::vector<Sents>{Sents{}}), Error);
  CHECK_THROWS_AS(reconstruction_bleu(lines({"a", "b", "c"}), lines({"a", "b"})), Error);
  CHECK_THROWS_AS(reconstruction_bleu(lines({"a"}), Sents{}), Error);
  CHECK_THROWS_AS(reconstruction_bleu(Sents{}, lines({"a"})), Error);
}

TEST_CASE("Dist-1 / Dist-2: pooled distinct counts, bigrams within samples only") {
  // Samples "a b a", "b a c", "", "d":
  //   unigrams: 3 + 3 + 0 + 1 = 7 tokens, distinct {a, b, c, d} = 4 -> Dist-1 = 4/7.
  //   bigrams: {ab, ba} + {ba, ac} + {} + {} = 4, distinct {ab, ba, ac} = 3 -> Dist-2 = 3/4.
  //   (Concatenating the samples would add the cross-sentence bigrams "a b" and "c d":
  //    6 bigrams, 4 distinct -> 2/3, which must not be what we get.)
  //   trigrams: aba, bac -> 2 of 2 distinct -> Dist-3 = 1.
  const Sents s = lines({"a b a", "b a c", "", "d"});
  const DistScore d = dist_scores(s);
  CHECK(d.unigrams == 7);
  CHECK(d.distinct_unigrams == 4);
  CHECK(d.bigrams == 4);
  CHECK(d.distinct_bigrams == 3);
  CHECK(d.dist1 == doctest::Approx(4.0 / 7));
  CHECK(d.dist2 == doctest::Approx(3.0 / 4));
  CHECK(dist_n(s, 1) == doctest::Approx(4.0 / 7));
  CHECK(dist_n(s, 2) == doctest::Approx(0.75));
  CHECK(dist_n(s, 3) == 1.0);
  CHECK(distinct_ngrams(s, 3).total == 2);

  // Duplicated samples: "x y x y" twice -> unigrams 8, distinct 2 -> 1/4;
  // bigrams xy yx xy per sample, 6 in all, distinct {xy, yx} = 2 -> 1/3.
  const DistScore dup = dist_scores(lines({"x y x y", "x y x y"}));
  CHECK(dup.dist1 == doctest::Approx(0.25));
  CHECK(dup.dist2 == doctest::Approx(1.0 / 3));

  // Ids give the same numbers.
  const DistScore di = dist_scores(to_ids(s));
  CHECK(di.dist1 == d.dist1);
  CHECK(di.dist2 == d.dist2);

  // Exact comparison: "A" and "a" are different unigrams.
  CHECK(dist_n(lines({"A a"}), 1) == 1.0);
}

TEST_CASE("Dist-n: empty input and samples without bigrams give 0, no division by zero") {
  const DistScore e = dist_scores(Sents{});
  CHECK(e.dist1 == 0.0);
  CHECK(e.dist2 == 0.0);
  CHECK(e.unigrams == 0);
  const DistScore blanks = dist_scores(lines({"", ""}));
  CHECK(blanks.dist1 == 0.0);
  CHECK(blanks.dist2 == 0.0);
  // One-token samples: Dist-1 = 2 distinct / 3 tokens; no bigrams -> Dist-2 = 0.
  const DistScore singles = dist_scores(lines({"a", "b", "a"}));
  CHECK(singles.dist1 == doctest::Approx(2.0 / 3));
  CHECK(singles.bigrams == 0);
  CHECK(singles.dist2 == 0.0);
  CHECK(dist_scores(Ids{}).dist2 == 0.0);
  CHECK_THROWS_AS(dist_n(lines({"a"}), 0), Error);
}
