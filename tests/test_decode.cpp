// Decoding (reference.md §5 "Greedy decoding"): Decoder<GRU>::decode and
// LanguageModel::decode. Greedy outputs are checked step by step against the argmax of the
// teacher-forced forward probabilities on their own prefix (eval mode); <unk> is never
// produced even when its bias dominates; sampled first tokens follow softmax(logits / T)
// (per-category 5-sigma bounds and a chi-square bound, T = 0.5 and 2); outputs are cut at
// the first <eos> and never empty; the kernels' cut rule on a hand-written token matrix.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <couplevae/couplevae.hpp>

#include "gradcheck.hpp"
#include "stats.hpp"
#include <couplevae/model/lm.hpp>

using namespace couplevae;
using gradcheck::randn;

namespace {
using Dec = Decoder<GRU>::module<double, cpu>;

Config tiny_config(int V = 11) {
  Config c = Config::preset("ptb");
  c.vocab_size = V;
  c.embed = 4;
  c.hidden = 3;  // decoder hidden 6
  c.dropout = 0.3;
  return c;
}

// An embedding and a Decoder<GRU> in their own arena, as a Model holds them.
struct Rig {
  Config cfg;
  Arena<double> ar;
  nn::Embedding<double> emb;
  Dec dec;
  explicit Rig(const Config& c, uint64_t seed) : cfg(c) {
    emb = nn::Embedding<double>(ar, "embedding", c.vocab_size, c.embed);
    dec = Dec(ar, "decoder", c);
    ar.finalize();
    ar.initialise(seed);
  }
  double* out_bias() { return ar.value(dec.out.b); }
  double* out_weight() { return ar.value(dec.out.W); }
};


int argmax_no_unk(const double* p, int V) {
  int best = -1;
  for (int k = 0; k < V; ++k)
    if (k != unk_id && (best < 0 || p[k] > p[best])) best = k;
  return best;
}

// Teacher-forced eval-mode forward of `sents` (caller's order) with h rows in the caller's
// order; returns the batch, leaves the probabilities in the cache.
Batch teacher_forced(Rig& rig, const std::vector<std::vector<int32_t>>& sents, const std::vector<double>& h,
                     Dec::Cache& cache) {
  const int E = rig.cfg.embed;
  Batch b = make_batch(sents, rig.cfg.vocab_size);
  std::vector<double> hs(h.size()), rec(b.size());
  for (int i = 0; i < b.size(); ++i)
    std::copy_n(h.begin() + size_t(b.order[i]) * E, E, hs.begin() + size_t(i) * E);
  Context<> ev(1, false);
  rig.dec.forward(ev, rig.ar, rig.emb, b, View<double>{hs.data(), b.size(), E}, View<double>{rec.data(), b.size(), 1},
                  cache);
  return b;
}

// Probability row of step t (1-based target position) of sorted sentence i.
const double* prob_row(const Batch& b, const Dec::Cache& c, int t, int i, int V) {
  return c.vocab.logits.data() + size_t(b.dec.row(t, i) - b.dec.batch) * V;
}

// Counts of the first token over `draws` and expected probabilities p^(1/T) (renormalised,
// <unk> excluded) from the step-1 probabilities p; checks 5-sigma bounds and a chi-square
// bound; returns the chi-square statistic of the counts against `other` expectations.
double check_first_token(const std::vector<std::vector<int32_t>>& out, const double* p, int V, double T,
                         const std::vector<double>* other = nullptr, std::vector<double>* expected = nullptr) {
  const double n = double(out.size());
  std::vector<double> counts(V, 0.0), q(V, 0.0);
  size_t empty = 0;
  for (const auto& s : out) {
    if (s.empty()) ++empty;
    else counts[s[0]] += 1;
  }
  REQUIRE(empty == 0);
  double z = 0;
  for (int k = 0; k < V; ++k)
    if (k != unk_id) z += q[k] = std::pow(p[k], 1.0 / T);
  for (double& v : q) v /= z;
  CHECK(counts[unk_id] == 0);
  double chi2 = 0;
  int df = -1;
  for (int k = 0; k < V; ++k) {
    if (k == unk_id) continue;
    const double m = n * q[k], sd = std::sqrt(n * q[k] * (1 - q[k]));
    CAPTURE(k);
    CAPTURE(q[k]);
    CHECK(std::abs(counts[k] - m) <= 5 * sd + 1);
    if (m >= 5) chi2 += (counts[k] - m) * (counts[k] - m) / m, ++df;
  }
  REQUIRE(df >= 4);
  CHECK(chi2 < stats::chi2_critical(df, 1e-6));  // exceeded with probability 1e-6
  if (expected) *expected = q;
  if (!other) return chi2;
  double x = 0;
  for (int k = 0; k < V; ++k)
    if (k != unk_id && (*other)[k] * n >= 5) x += std::pow(counts[k] - n * (*other)[k], 2) / (n * (*other)[k]);
  return x;
}
}  // namespace

TEST_CASE("decode_ops: the cut rule keeps the prefix before the first <eos>, never empty") {
  // 4 rows x 5 steps, time-major.
  const int32_t rows[4][5] = {{5, 6, eos_id, 7, eos_id}, {eos_id, 5, 6, 7, 8}, {5, 6, 7, 8, 9}, {9, eos_id, eos_id, 4, 4}};
  std::vector<int32_t> tm(20);
  for (int t = 0; t < 5; ++t)
    for (int i = 0; i < 4; ++i) tm[size_t(t) * 4 + i] = rows[i][t];
  std::vector<std::vector<int32_t>> out;
  decode_ops<cpu>::cut_at_eos(tm.data(), 5, 4, eos_id, out);
  REQUIRE(out.size() == 4);
  CHECK(out[0] == std::vector<int32_t>{5, 6});
  CHECK(out[1] == std::vector<int32_t>{eos_id});
  CHECK(out[2] == std::vector<int32_t>{5, 6, 7, 8, 9});
  CHECK(out[3] == std::vector<int32_t>{9});
}

TEST_CASE("decode_ops: greedy picks the first maximum outside <unk>, finished rows are counted") {
  std::vector<double> logits = {0, 1, 5, 9, 5,   // unk (3) largest: masked, then first max 2
                                7, 1, 2, 3, 7};  // tie: the first
  std::vector<int32_t> tok(2), fin = {0, 0};
  Rng rng(1);
  CHECK(decode_ops<cpu>::pick_tokens(rng, logits.data(), 2, 5, unk_id, 0.0, eos_id, tok.data(), fin.data()) == 1);
  CHECK(tok == std::vector<int32_t>{2, 0});
  CHECK(fin == std::vector<int32_t>{1, 0});
  CHECK(rng.position == 0);  // greedy draws nothing
  CHECK(std::isinf(logits[3]));
}

TEST_CASE("Decoder<GRU>::decode: greedy output is the teacher-forced argmax on its own prefix") {
  const Config c = tiny_config();
  const int V = c.vocab_size, E = c.embed, nb = 48, max_len = 10;
  Rig rig(c, 5);
  double* bv = rig.out_bias();
  bv[pad_id] -= 30;  // so every decoded sentence is a valid batch for the forward pass
  bv[go_id] -= 30;
  bv[eos_id] += 0.3;
  for (int k = 0; k < V * E; ++k) rig.out_weight()[k] *= 3;  // sharper, h-dependent predictions
  const auto h = randn(size_t(nb) * E, 17, 2.0);
  Context<> ctx(9, true);  // decoding ignores training mode
  const auto out = rig.dec.decode(ctx, rig.ar, rig.emb, View<double>{const_cast<double*>(h.data()), nb, E}, max_len, 0.0);
  CHECK(ctx.rng.position == 0);
  REQUIRE(int(out.size()) == nb);

  std::vector<std::vector<int32_t>> sents;
  int first_eos = 0, later_eos = 0, full = 0;
  for (const auto& s : out) {
    REQUIRE(!s.empty());
    REQUIRE(int(s.size()) <= max_len);
    const bool only_eos = s.size() == 1 && s[0] == eos_id;
    for (int32_t w : s) {
      CHECK(w != unk_id);
      if (!only_eos) CHECK(w > unk_id);  // no <pad> <go> <eos> inside
    }
    first_eos += only_eos;
    later_eos += !only_eos && int(s.size()) < max_len;
    full += int(s.size()) == max_len;
    sents.push_back(only_eos ? std::vector<int32_t>{4} : s);  // {<eos>}: only step 1 is compared
  }
  CAPTURE(first_eos);
  CAPTURE(later_eos);
  CAPTURE(full);
  // The case mix this seed is chosen for: the cut happens at several places.
  REQUIRE(later_eos >= 4);
  REQUIRE(full >= 10);
  REQUIRE(first_eos >= 5);

  Dec::Cache cache;
  const Batch b = teacher_forced(rig, sents, h, cache);
  int compared = 0;
  for (int i = 0; i < b.size(); ++i) {
    const auto& s = out[b.order[i]];
    CAPTURE(b.order[i]);
    if (s.size() == 1 && s[0] == eos_id) {
      CHECK(argmax_no_unk(prob_row(b, cache, 1, i, V), V) == eos_id);
      ++compared;
      continue;
    }
    const int L = int(s.size());
    for (int t = 1; t <= L; ++t, ++compared) {
      CAPTURE(t);
      CHECK(argmax_no_unk(prob_row(b, cache, t, i, V), V) == s[t - 1]);
    }
    if (L < max_len) {
      CHECK(argmax_no_unk(prob_row(b, cache, L + 1, i, V), V) == eos_id);  // stopped by <eos>
      ++compared;
    }
  }
  CHECK(compared > 200);

  // A row's result does not depend on the other rows of the batch.
  const auto one = rig.dec.decode(ctx, rig.ar, rig.emb, View<double>{const_cast<double*>(h.data()) + 5 * E, 1, E},
                                  max_len, 0.0);
  CHECK(one[0] == out[5]);
}

namespace {
// Decoder<GRU>::decode written as the loop that keeps every row to the end (finished rows
// go on being computed, their tokens discarded by the cut): the reference for the loop that
// drops them.
std::vector<std::vector<int32_t>> decode_every_row(Rig& rig, Context<>& ctx, const std::vector<double>& h, int nb,
                                                   int max_len, double T) {
  const int E = rig.cfg.embed, Hd = rig.cfg.dec_hidden(), V = rig.cfg.vocab_size;
  std::vector<double> X(size_t(nb) * 2 * E), s(size_t(nb) * Hd, 0.0), sn(s.size()), A(size_t(nb) * E),
      logits(size_t(nb) * V);
  for (int i = 0; i < nb; ++i)
    for (int k = 0; k < E; ++k) X[size_t(i) * 2 * E + k] = X[size_t(i) * 2 * E + E + k] = h[size_t(i) * E + k];
  nn::GRU<double>::Cache scratch;
  auto step = [&] {
    rig.dec.rnn.step(ctx, rig.ar, View<double>{X.data(), nb, 2 * E}, View<double>{s.data(), nb, Hd},
                     View<double>{sn.data(), nb, Hd}, scratch);
    std::swap(s, sn);
  };
  step();
  std::vector<int32_t> tokens(size_t(nb), go_id), finished(size_t(nb), 0), all;
  int steps = 0;
  for (int t = 1; t <= max_len; ++t) {
    rig.emb.forward(ctx, rig.ar, tokens.data(), nb, X.data(), 2 * E);
    step();
    rig.dec.proj.forward(ctx, rig.ar, View<double>{s.data(), nb, Hd}, View<double>{A.data(), nb, E});
    for (double& a : A) a = std::tanh(a);
    rig.dec.out.forward(ctx, rig.ar, View<double>{A.data(), nb, E}, View<double>{logits.data(), nb, V});
    const int running = decode_ops<cpu>::pick_tokens(ctx.rng, logits.data(), nb, V, unk_id, T, eos_id, tokens.data(),
                                                     finished.data());
    all.insert(all.end(), tokens.begin(), tokens.end());
    ++steps;
    if (running == 0) break;
  }
  std::vector<std::vector<int32_t>> out;
  decode_ops<cpu>::cut_at_eos(all.data(), steps, nb, eos_id, out);
  return out;
}
}  // namespace

TEST_CASE("Decoder<GRU>::decode: finished rows leave the loop, greedy and sampled outputs are those of every row kept") {
  const Config c = tiny_config();
  const int E = c.embed, nb = 48, max_len = 10;
  Rig rig(c, 5);  // the rig of the teacher-forced greedy case: lengths from 1 to max_len in one batch
  rig.out_bias()[pad_id] -= 30;
  rig.out_bias()[go_id] -= 30;
  rig.out_bias()[eos_id] += 0.3;
  for (int k = 0; k < c.vocab_size * E; ++k) rig.out_weight()[k] *= 3;
  const auto h = randn(size_t(nb) * E, 17, 2.0);
  for (double T : {0.0, 0.7, 1.5}) {
    CAPTURE(T);
    Context<> a(31), b(31);
    const auto fast = rig.dec.decode(a, rig.ar, rig.emb, View<double>{const_cast<double*>(h.data()), nb, E}, max_len, T);
    const auto ref = decode_every_row(rig, b, h, nb, max_len, T);
    CHECK(fast == ref);
    CHECK(a.rng.position == b.rng.position);  // the same draws
    // The case mix that makes the check bite: rows end at many different steps.
    std::vector<size_t> lengths;
    for (const auto& s : fast) lengths.push_back(s.size());
    std::sort(lengths.begin(), lengths.end());
    CHECK(lengths.front() == 1);
    CHECK(lengths.back() == size_t(max_len));
    CHECK(std::unique(lengths.begin(), lengths.end()) - lengths.begin() >= 5);
  }
}

TEST_CASE("Decoder<GRU>::decode: <unk> is never produced, even when its logit dominates") {
  const Config c = tiny_config();
  const int V = c.vocab_size, E = c.embed, nb = 64;
  Rig rig(c, 6);
  rig.out_bias()[unk_id] = 1e6;
  const auto h = randn(size_t(nb) * E, 3, 1.0);
  View<double> hv{const_cast<double*>(h.data()), nb, E};
  // Unmasked, the model would say <unk> with probability ~1.
  Dec::Cache cache;
  const Batch b = teacher_forced(rig, std::vector<std::vector<int32_t>>(nb, {4}), h, cache);
  CHECK(prob_row(b, cache, 1, 0, V)[unk_id] == doctest::Approx(1.0));
  Context<> ctx(4);
  for (double T : {0.0, 1.0, 5.0}) {
    CAPTURE(T);
    for (const auto& s : rig.dec.decode(ctx, rig.ar, rig.emb, hv, 8, T)) {
      REQUIRE(!s.empty());
      for (int32_t w : s) CHECK(w != unk_id);
    }
  }
}

TEST_CASE("Decoder<GRU>::decode: sampled first tokens follow softmax(logits / T), T = 0.5 and 2") {
  const Config c = tiny_config(9);
  const int V = c.vocab_size, E = c.embed, N = 20000;
  Rig rig(c, 8);
  double* bv = rig.out_bias();
  for (int k = 0; k < V; ++k) bv[k] = 0.35 * (k % 5) - 0.5;  // a spread of logits
  bv[unk_id] = 1.0;                                            // masked away
  const auto h1 = randn(size_t(E), 12, 1.0);
  std::vector<double> h(size_t(N) * E);
  for (int i = 0; i < N; ++i) std::copy(h1.begin(), h1.end(), h.begin() + size_t(i) * E);
  View<double> hv{h.data(), N, E};
  Dec::Cache cache;
  const Batch b = teacher_forced(rig, {{4}}, h1, cache);
  const double* p = prob_row(b, cache, 1, 0, V);  // softmax(logits) at step 1

  Context<> ctx(77);
  const auto o_half = rig.dec.decode(ctx, rig.ar, rig.emb, hv, 1, 0.5);
  CHECK(ctx.rng.position == Rng::blocks_for(N));  // one uniform per row and step
  const auto o_two = rig.dec.decode(ctx, rig.ar, rig.emb, hv, 1, 2.0);
  std::vector<double> q_half, q_two;
  check_first_token(o_half, p, V, 0.5, nullptr, &q_half);
  check_first_token(o_two, p, V, 2.0, nullptr, &q_two);
  // The check can fail: each sample set is far from the other temperature's distribution.
  CHECK(check_first_token(o_half, p, V, 0.5, &q_two) > 500);
  CHECK(check_first_token(o_two, p, V, 2.0, &q_half) > 500);

  // Same noise position, same samples; the greedy choice is the mode.
  ctx.rng.position = Rng::blocks_for(N);
  CHECK(rig.dec.decode(ctx, rig.ar, rig.emb, hv, 1, 2.0) == o_two);
  const auto g = rig.dec.decode(ctx, rig.ar, rig.emb, View<double>{h.data(), 1, E}, 1, 0.0);
  CHECK(g[0][0] == argmax_no_unk(p, V));
}

TEST_CASE("Decoder<GRU>::decode: cut at <eos>, never empty, early stop, errors") {
  const Config c = tiny_config();
  const int E = c.embed, nb = 16;
  Rig rig(c, 9);
  const auto h = randn(size_t(nb) * E, 4, 1.0);
  View<double> hv{const_cast<double*>(h.data()), nb, E};
  Context<> ctx(2);
  // <eos> always first: every output is {<eos>}, and sampling stops after one step.
  rig.out_bias()[eos_id] = 1e3;
  const auto first = rig.dec.decode(ctx, rig.ar, rig.emb, hv, 50, 1.0);
  for (const auto& s : first) CHECK(s == std::vector<int32_t>{eos_id});
  CHECK(ctx.rng.position == Rng::blocks_for(nb));
  // <eos> never: every output runs the full max_len.
  rig.out_bias()[eos_id] = -1e3;
  for (double T : {0.0, 1.0})
    for (const auto& s : rig.dec.decode(ctx, rig.ar, rig.emb, hv, 7, T)) {
      CHECK(s.size() == 7);
      CHECK(std::find(s.begin(), s.end(), eos_id) == s.end());
    }
  CHECK(rig.dec.decode(ctx, rig.ar, rig.emb, View<double>{const_cast<double*>(h.data()), 0, E}, 5, 0.0).empty());
  CHECK_THROWS_AS(rig.dec.decode(ctx, rig.ar, rig.emb, hv, 0, 0.0), Error);
  CHECK_THROWS_AS(rig.dec.decode(ctx, rig.ar, rig.emb, View<double>{const_cast<double*>(h.data()), 4, E + 1}, 5, 0.0),
                  Error);
}

TEST_CASE("Decoder<GRU>::decode from a Model (float): prior samples decode to valid sentences") {
  Config c = tiny_config();
  c.latent = 2;
  c.mlp_hidden = 5;
  using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
  VAE m(c, 3);
  const int nb = 5;
  std::vector<float> z(size_t(nb) * c.latent), h(size_t(nb) * c.embed);
  Rng(8).normal(z.data(), z.size());
  Context<> ctx(1, false);
  typename nn::MLP<float>::Cache mc;
  m.mlp.forward(ctx, m.arena(), View<float>{z.data(), nb, c.latent}, View<float>{h.data(), nb, c.embed}, mc);
  const auto out = m.dec.decode(ctx, m.arena(), m.emb, View<float>{h.data(), nb, c.embed}, 12, 0.0);
  REQUIRE(out.size() == size_t(nb));
  for (const auto& s : out) {
    CHECK(!s.empty());
    CHECK(s.size() <= 12);
    for (int32_t w : s) CHECK((w >= 0 && w < c.vocab_size && w != unk_id));
  }
}

TEST_CASE("LanguageModel::decode: greedy is the teacher-forced argmax, samples follow softmax(logits / T)") {
  Config c = tiny_config(9);
  using LMd = LanguageModel<Decoder<GRU>, cpu, double>;
  const int V = c.vocab_size, max_len = 15;
  // Tiny random LMs fall into short cycles; several seeds give a mix of lengths and endings.
  int compared = 0, ended = 0, only = 0, full = 0;
  for (uint64_t seed = 1; seed <= 16; ++seed) {
    CAPTURE(seed);
    LMd lm(c, seed);
    double* bv = lm.arena().value(lm.out.b);
    bv[pad_id] -= 30;
    bv[go_id] -= 30;
    for (int k = 0; k < V * c.embed; ++k) lm.arena().value(lm.out.W)[k] *= 3;
    Context<> ctx(3);
    const auto g = lm.decode(ctx, 2, max_len, 0.0);
    REQUIRE(g.size() == 2);
    CHECK(g[1] == g[0]);  // no latent: every greedy row is the same
    CHECK(ctx.rng.position == 0);
    const auto& s = g[0];
    REQUIRE(!s.empty());
    const bool only_eos = s.size() == 1 && s[0] == eos_id;
    for (int32_t w : s)
      if (!only_eos) REQUIRE(w > unk_id);
    Context<> ev(1, false);
    const Batch b = make_batch({only_eos ? std::vector<int32_t>{4} : s}, V);
    lm.forward(ev, b, 0);
    View<double> p = lm.probabilities();
    REQUIRE(p.rows == int(only_eos ? 2 : s.size() + 1));
    if (only_eos) {
      CHECK(argmax_no_unk(p.row(0), V) == eos_id);
      ++compared, ++only;
      continue;
    }
    for (size_t t = 0; t < s.size(); ++t, ++compared) CHECK(argmax_no_unk(p.row(int(t)), V) == s[t]);
    if (int(s.size()) < max_len) {
      CHECK(argmax_no_unk(p.row(int(s.size())), V) == eos_id);
      ++compared, ++ended;
    } else {
      ++full;
    }
  }
  CHECK(compared > 100);
  CHECK(only >= 1);
  CHECK(ended >= 2);
  CHECK(full >= 5);

  // Sampling at T = 2 from one LM: the first token follows softmax(logits / 2).
  LMd lm(c, 12);
  Context<> ev(1, false);
  lm.forward(ev, make_batch({{4}}, V), 0);
  View<double> p = lm.probabilities();
  std::vector<double> p1(p.row(0), p.row(0) + V);  // step 1 does not depend on the sentence
  const int N = 20000;
  Context<> ctx(3);
  const auto o = lm.decode(ctx, N, 1, 2.0);
  CHECK(ctx.rng.position == Rng::blocks_for(N));
  check_first_token(o, p1.data(), V, 2.0);
  CHECK_THROWS_AS(lm.decode(ctx, 2, 0, 1.0), Error);
  CHECK(lm.decode(ctx, 0, 5, 1.0).empty());
}
