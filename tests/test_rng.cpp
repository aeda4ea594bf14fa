// Tests of the counter-based generator (core/rng.hpp), whose draws are every model's noise:
//   - Philox4x32-10 against Random123's published known-answer vectors (kat_vectors);
//   - uniform (0, 1) and standard normal draws against their exact CDFs (Kolmogorov-Smirnov),
//     the two values of a Box-Muller pair uncorrelated, the open interval at both ends;
//   - the layout the kernels rely on: element i of a draw is philox_uniform / philox_normal
//     (position, i), a draw of n advances the position by ceil(n / 4) blocks;
//   - below(n) uniform over its n values (chi-square), derive() independent of its parent;
//   - noise by row: a row's values are a function of (key, id) alone (Philox words and
//     Box-Muller recomputed here), N(0, 1) across rows, names and slots apart, and the cpu
//     draw (ops<cpu>::normal_rows, posterior/noise.hpp's ids) puts each row where its id is.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <couplevae/backend/cpu/ops.hpp>
#include <couplevae/core/rng.hpp>
#include <couplevae/posterior/noise.hpp>

#include "stats.hpp"

using namespace couplevae;

namespace {

using stats::ks_p001;
using stats::ks_statistic;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

}  // namespace

TEST_CASE("philox: Random123's known-answer vectors for Philox4x32-10") {
  struct Kat {
    uint32_t counter[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    uint32_t c[4] = {k.counter[0], k.counter[1], k.counter[2], k.counter[3]};
    Philox::block(c, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) CHECK(c[i] == k.out[i]);
  }
  // philox_words puts the block position in counter words 0-1, the sub-stream in word 2, a
  // constant in word 3, and the seed in the key.
  uint32_t w[4], c[4] = {0x89abcdefu, 0x01234567u, 7u, 0x636f7570u};
  philox_words(0xfedcba9876543210ull, 0x0123456789abcdefull, 7, w);
  Philox::block(c, 0x76543210u, 0xfedcba98u);
  for (int i = 0; i < 4; ++i) CHECK(w[i] == c[i]);
}

TEST_CASE("rng: uniform draws in the open interval (0, 1), uniform by Kolmogorov-Smirnov") {
  // the extreme words map inside (0, 1) for both precisions
  CHECK(uniform_from_bits<float>(0u) > 0.0f);
  CHECK(uniform_from_bits<float>(0xffffffffu) < 1.0f);
  CHECK(uniform_from_bits<double>(0u) > 0.0);
  CHECK(uniform_from_bits<double>(0xffffffffu) < 1.0);
  CHECK(uniform_from_bits<double>(0x80000000u) == doctest::Approx(0.5).epsilon(1e-9));
  const size_t n = 200000;
  std::vector<double> u(n);
  Rng(2024).uniform(u.data(), n);
  CHECK(*std::min_element(u.begin(), u.end()) > 0.0);
  CHECK(*std::max_element(u.begin(), u.end()) < 1.0);
  CHECK(ks_statistic(u, [](double x) { return x; }) < ks_p001);
  std::vector<float> uf(n);
  Rng(2025).uniform(uf.data(), n);
  CHECK(ks_statistic(std::vector<double>(uf.begin(), uf.end()), [](double x) { return x; }) < ks_p001);
}

TEST_CASE("rng: normal draws follow N(0, 1), the two values of each Box-Muller pair are uncorrelated") {
  const size_t n = 200000;
  std::vector<double> z(n);
  Rng(77).normal(z.data(), n);
  CHECK(ks_statistic(z, normal_cdf) < ks_p001);
  double s = 0, s2 = 0, s4 = 0;
  for (double v : z) s += v, s2 += v * v, s4 += v * v * v * v;
  CHECK(std::abs(s / n) < 5 / std::sqrt(double(n)));
  CHECK(std::abs(s2 / n - 1) < 5 * std::sqrt(2.0 / n));
  CHECK(std::abs(s4 / n - 3) < 5 * std::sqrt(96.0 / n));  // Var z^4 = 105 - 9
  // lanes (0, 1) and (2, 3) of a block are a pair, (1, 2) are from different pairs: each
  // product has mean 0 and variance 1 when independent; a pair's squares sum to -2 ln u1,
  // Exp(1/2), so their correlation is 0 too (a cos/cos pair would give 1).
  for (int lag_start : {0, 1, 2}) {
    CAPTURE(lag_start);
    double p = 0, q = 0;
    size_t m = 0;
    for (size_t i = size_t(lag_start); i + 1 < n; i += 4, ++m)
      p += z[i] * z[i + 1], q += (z[i] * z[i] - 1) * (z[i + 1] * z[i + 1] - 1);
    CHECK(std::abs(p / double(m)) < 5 / std::sqrt(double(m)));
    CHECK(std::abs(q / double(m)) < 5 * std::sqrt(4.0 / double(m)));
  }
  std::vector<float> zf(n);
  Rng(78).normal(zf.data(), n);
  CHECK(ks_statistic(std::vector<double>(zf.begin(), zf.end()), normal_cdf) < ks_p001);
}

TEST_CASE("rng: element i of a draw is philox_uniform / philox_normal(position, i), positions advance by blocks") {
  for (size_t n : {size_t(1), size_t(3), size_t(4), size_t(9), size_t(64)}) {
    CAPTURE(n);
    Rng r(123456789, 40);
    std::vector<double> u(n), z(n);
    r.uniform(u.data(), n);
    CHECK(r.position == 40 + (n + 3) / 4);
    const uint64_t zpos = r.position;
    r.normal(z.data(), n);
    CHECK(r.position == zpos + (n + 3) / 4);
    for (size_t i = 0; i < n; ++i) {
      CHECK(u[i] == philox_uniform<double>(123456789, 40, i));
      CHECK(z[i] == philox_normal<double>(123456789, zpos, i));
    }
  }
  // two draws of 8 read the same blocks as one draw of 16; a seed or a position apart differs
  std::vector<double> a(16), b(16), c(16);
  Rng r1(5), r2(5), r3(6);
  r1.normal(a.data(), 8);
  r1.normal(a.data() + 8, 8);
  r2.normal(b.data(), 16);
  r3.normal(c.data(), 16);
  int same_seed = 0, other_seed = 0;
  for (int i = 0; i < 16; ++i) same_seed += a[i] == b[i], other_seed += a[i] == c[i];
  CHECK(same_seed == 16);
  CHECK(other_seed == 0);
}

TEST_CASE("stats: chi-square and Kolmogorov critical values and the Gamma CDF match the printed tables") {
  // Known answers from standard chi-square and Kolmogorov tables (upper-tail quantiles), the
  // closed forms of chi-square with 2 degrees of freedom (an exponential of mean 2: -2 ln p)
  // and P(1/2, x) = erf(sqrt(x)) (chi-square with 1 degree of freedom is a squared normal).
  CHECK(stats::chi2_critical(1, 0.05) == doctest::Approx(3.8415).epsilon(1e-4));
  CHECK(stats::chi2_critical(2, 0.01) == doctest::Approx(-2 * std::log(0.01)).epsilon(1e-12));
  CHECK(stats::chi2_critical(9, 0.001) == doctest::Approx(27.877).epsilon(1e-4));
  CHECK(stats::chi2_critical(23, 0.001) == doctest::Approx(49.728).epsilon(1e-4));
  CHECK(stats::chi2_critical(100, 0.05) == doctest::Approx(124.342).epsilon(1e-4));
  CHECK(stats::ks_critical(0.05) == doctest::Approx(1.3581).epsilon(1e-4));
  CHECK(stats::ks_critical(0.01) == doctest::Approx(1.6276).epsilon(1e-4));
  CHECK(stats::ks_p001 == doctest::Approx(1.9495).epsilon(1e-4));
  for (double x : {0.01, 0.5, 2.0, 9.0})
    CHECK(double(stats::gamma_p(0.5L, x)) == doctest::Approx(std::erf(std::sqrt(x))).epsilon(1e-12));
}

TEST_CASE("rng: below(n) is uniform over 0 .. n-1 (chi-square), derive() gives a generator unlike its parent") {
  const int k = 10, draws = 100000;
  std::vector<long> counts(k, 0);
  Rng r(31);
  for (int i = 0; i < draws; ++i) {
    const uint64_t v = r.below(k);
    REQUIRE(v < uint64_t(k));
    ++counts[v];
  }
  CHECK(r.position == uint64_t(draws));
  double chi2 = 0;
  const double expect = double(draws) / k;
  for (long c : counts) chi2 += (c - expect) * (c - expect) / expect;
  CHECK(chi2 < stats::chi2_critical(k - 1, 0.001));  // exceeded with probability 0.001
  // derived generators: another seed, different per label, reproducible, position 0
  const Rng parent(99, 17);
  const Rng d1 = parent.derive(1), d1again = parent.derive(1), d2 = parent.derive(2);
  CHECK(d1.seed == d1again.seed);
  CHECK(d1.seed != d2.seed);
  CHECK(d1.seed != parent.seed);
  CHECK(d1.position == 0);
  std::vector<double> x(4000), y(4000);
  Rng(d1).normal(x.data(), x.size());
  Rng(parent).normal(y.data(), y.size());
  double p = 0;
  for (size_t i = 0; i < x.size(); ++i) p += x[i] * y[i];
  CHECK(std::abs(p / double(x.size())) < 5 / std::sqrt(double(x.size())));
}

TEST_CASE("rng: noise by row is a function of (key, id) alone, N(0, 1), and the cpu draw follows the ids") {
  const uint64_t key = 0x0123456789abcdefull;
  // Column c of the row with id (slot << 32) | name: lane c % 4 of the Philox block with
  // counter ((slot << 32) + c / 4, stream = name, "coup"), Box-Muller on its lane pair.
  auto by_hand = [&](uint32_t name, uint32_t slot, int c) {
    const uint64_t block = (uint64_t(slot) << 32) + uint64_t(c / 4);
    uint32_t w[4] = {uint32_t(block), uint32_t(block >> 32), name, 0x636f7570u};
    Philox::block(w, uint32_t(key), uint32_t(key >> 32));
    const int lane = c % 4, pair = lane / 2;
    const double u1 = (double(w[2 * pair]) + 0.5) / 4294967296.0, u2 = (double(w[2 * pair + 1]) + 0.5) / 4294967296.0;
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 2 * 3.14159265358979323846 * u2;
    return lane % 2 == 0 ? r * std::cos(a) : r * std::sin(a);
  };
  for (uint32_t name : {0u, 1u, 4000000000u})
    for (uint32_t slot : {0u, 7u, 4294967295u})
      for (int c : {0, 1, 2, 3, 5, 31}) {
        CAPTURE(name);
        CAPTURE(slot);
        CAPTURE(c);
        CHECK(row_noise_normal<double>(key, row_noise_id(name, slot), uint64_t(c)) ==
              doctest::Approx(by_hand(name, slot, c)).epsilon(1e-14));
      }
  CHECK(row_noise_id(5, 3) == ((uint64_t(3) << 32) | 5u));
  CHECK(sentence_noise_id(5, 3) == row_noise_id(5, 3));
  CHECK_THROWS_WITH_AS(sentence_noise_id(long(UINT32_MAX) + 1, 0), doctest::Contains("2^32 sentences"), Error);
  CHECK_THROWS_WITH_AS(sentence_noise_id(0, -1), doctest::Contains("2^32 samples"), Error);

  // Across 2000 names x 25 slots (the first 4 columns of each row): N(0, 1) by
  // Kolmogorov-Smirnov, and neighbouring names / slots uncorrelated.
  std::vector<double> z;
  double p_name = 0, p_slot = 0;
  long m = 0;
  for (uint32_t name = 0; name < 2000; ++name)
    for (uint32_t slot = 0; slot < 25; ++slot) {
      for (int c = 0; c < 4; ++c) z.push_back(row_noise_normal<double>(key, row_noise_id(name, slot), uint64_t(c)));
      const double here = row_noise_normal<double>(key, row_noise_id(name, slot), 0);
      p_name += here * row_noise_normal<double>(key, row_noise_id(name + 1, slot), 0);
      p_slot += here * row_noise_normal<double>(key, row_noise_id(name, slot + 1), 0);
      ++m;
    }
  CHECK(ks_statistic(z, normal_cdf) < ks_p001);
  CHECK(std::abs(p_name / double(m)) < 5 / std::sqrt(double(m)));
  CHECK(std::abs(p_slot / double(m)) < 5 / std::sqrt(double(m)));

  // The cpu draw: row r holds the values of ids[r], wherever that id sits and whatever
  // rows share the draw (sentence_noise_ids lays out k samples per sentence, copies adjacent).
  const int cols = 6;
  const std::vector<uint64_t> ids = sentence_noise_ids({2, 0, 1}, 10, 4, 2);  // sentences 12, 10, 11; samples 4, 5
  REQUIRE(ids.size() == 6);
  CHECK(ids[0] == sentence_noise_id(12, 4));
  CHECK(ids[1] == sentence_noise_id(12, 5));
  CHECK(ids[5] == sentence_noise_id(11, 5));
  std::vector<float> all(ids.size() * cols);
  ops<cpu>::normal_rows(RowNoise{key, ids.data()}, int(ids.size()), cols, all.data());
  const std::vector<uint64_t> one = {ids[3]};
  std::vector<float> alone(cols);
  ops<cpu>::normal_rows(RowNoise{key, one.data()}, 1, cols, alone.data());
  for (size_t r = 0; r < ids.size(); ++r)
    for (int c = 0; c < cols; ++c) CHECK(all[r * cols + size_t(c)] == row_noise_normal<float>(key, ids[r], uint64_t(c)));
  CHECK(std::equal(alone.begin(), alone.end(), all.begin() + 3 * cols));
  // another key draws other values
  std::vector<float> other(cols);
  ops<cpu>::normal_rows(RowNoise{key + 1, one.data()}, 1, cols, other.data());
  int same = 0;
  for (int c = 0; c < cols; ++c) same += other[size_t(c)] == alone[size_t(c)];
  CHECK(same == 0);
}
