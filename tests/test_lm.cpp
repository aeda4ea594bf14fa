// The GRU-LM baseline (model/lm.hpp): whole-model gradient check (double, training mode
// with dropout, noise replayed), its exact NLL against a naive per-sentence recomputation
// written here from the parameters found by name, importance weights identical for every
// sample, the evaluate_nll path, parameter names, and a few Adam steps lowering the loss.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>
#include <couplevae/model/lm.hpp>

#include "gradcheck.hpp"

using namespace couplevae;

namespace {
using LMd = LanguageModel<Decoder<GRU>, cpu, double>;
using LMf = LanguageModel<Decoder<GRU>>;

static_assert(!LMd::has_latent && !LMd::is_coupled && LMd::exact_likelihood);
static_assert(std::is_same_v<LMd::scalar, double> && std::is_same_v<LMd::backend, cpu>);
static_assert(std::is_same_v<LMf::scalar, float>);

Config tiny_config() {
  Config c = Config::preset("ptb");
  c.vocab_size = 13;
  c.embed = 4;
  c.hidden = 3;  // decoder hidden 6
  c.dropout = 0.3;
  return c;
}

const std::vector<std::vector<int32_t>>& tiny_sentences() {
  static const std::vector<std::vector<int32_t>> s = {{4, 5, 6}, {7, 3}, {8, 9, 10, 11, 12}, {5}, {6, 6, 4, 3}};
  return s;
}

const double* param(const Arena<double>& ar, const std::string& name) {
  for (const auto& p : ar.infos())
    if (p.name == name) return ar.values().data() + p.offset;
  FAIL("no parameter named " << name);
  return nullptr;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// -log p(sentence) by the textbook recurrence, one token at a time (PyTorch's GRU cell and
// the decoder head W_v tanh(W_c o + b_c) + b_v), reading the parameters by name.
double naive_nll(const Arena<double>& ar, const Config& c, const std::vector<int32_t>& s) {
  const int E = c.embed, H = c.dec_hidden(), V = c.vocab_size;
  const double* emb = param(ar, "embedding.weight");
  const double* Wih = param(ar, "decoder.rnn.weight_ih_l0");
  const double* Whh = param(ar, "decoder.rnn.weight_hh_l0");
  const double* bih = param(ar, "decoder.rnn.bias_ih_l0");
  const double* bhh = param(ar, "decoder.rnn.bias_hh_l0");
  const double* Wc = param(ar, "decoder.proj.weight");
  const double* bc = param(ar, "decoder.proj.bias");
  const double* Wv = param(ar, "decoder.out.weight");
  const double* bv = param(ar, "decoder.out.bias");
  std::vector<double> h(H, 0.0);
  double nll = 0;
  for (size_t t = 0; t <= s.size(); ++t) {
    const int32_t in = t == 0 ? go_id : s[t - 1];
    const int32_t target = t < s.size() ? s[t] : eos_id;
    const double* x = emb + size_t(in) * E;
    std::vector<double> gi(3 * H), gh(3 * H), hn(H);
    for (int g = 0; g < 3 * H; ++g) {
      gi[g] = bih[g];
      gh[g] = bhh[g];
      for (int k = 0; k < E; ++k) gi[g] += Wih[g * E + k] * x[k];
      for (int k = 0; k < H; ++k) gh[g] += Whh[g * H + k] * h[k];
    }
    for (int k = 0; k < H; ++k) {
      const double r = sigmoid(gi[k] + gh[k]), z = sigmoid(gi[H + k] + gh[H + k]);
      const double n = std::tanh(gi[2 * H + k] + r * gh[2 * H + k]);
      hn[k] = (1 - z) * n + z * h[k];
    }
    h = hn;
    std::vector<double> a(E), logit(V);
    for (int j = 0; j < E; ++j) {
      double v = bc[j];
      for (int k = 0; k < H; ++k) v += Wc[j * H + k] * h[k];
      a[j] = std::tanh(v);
    }
    double m = -1e300;
    for (int v = 0; v < V; ++v) {
      logit[v] = bv[v];
      for (int j = 0; j < E; ++j) logit[v] += Wv[v * E + j] * a[j];
      m = std::max(m, logit[v]);
    }
    double z = 0;
    for (int v = 0; v < V; ++v) z += std::exp(logit[v] - m);
    nll += m + std::log(z) - logit[target];
  }
  return nll;
}
}  // namespace

TEST_CASE("LanguageModel: structure, parameter names and shapes") {
  const Config c = tiny_config();
  LMd lm(c, 3);
  CHECK(LMd::structure() == "lm-gru");
  std::map<std::string, std::vector<int>> want = {
      {"embedding.weight", {13, 4}},          {"decoder.rnn.weight_ih_l0", {18, 4}},
      {"decoder.rnn.weight_hh_l0", {18, 6}},  {"decoder.rnn.bias_ih_l0", {18}},
      {"decoder.rnn.bias_hh_l0", {18}},       {"decoder.proj.weight", {4, 6}},
      {"decoder.proj.bias", {4}},             {"decoder.out.weight", {13, 4}},
      {"decoder.out.bias", {13}}};
  REQUIRE(lm.arena().infos().size() == want.size());
  for (const auto& p : lm.arena().infos()) {
    CAPTURE(p.name);
    REQUIRE(want.count(p.name) == 1);
    CHECK(p.shape == want[p.name]);
  }
  CHECK(lm.arena().infos().front().name == "embedding.weight");
  // Embedding N(0,1) (not the fan-in uniform of the other tensors).
  const double* e = param(lm.arena(), "embedding.weight");
  double mx = 0;
  for (int i = 0; i < 13 * 4; ++i) mx = std::max(mx, std::abs(e[i]));
  CHECK(mx > 1.0 / std::sqrt(6.0));
  CHECK_THROWS_AS(LMd([] { Config b = tiny_config(); b.dropout = 1.5; return b; }(), 1), Error);
}

TEST_CASE("LanguageModel: whole-model gradient check (double, dropout on, noise replayed)") {
  const Config c = tiny_config();
  LMd lm(c, 7);
  const Batch b = make_batch(tiny_sentences(), c.vocab_size);
  Context<> ctx(123, true);
  auto loss = [&] {
    ctx.rng.position = 0;
    return lm.forward(ctx, b, 5).loss;
  };
  // Dropout is really on: another noise position gives another loss; eval mode differs too.
  const double l0 = loss();
  ctx.rng.position = 1000;
  CHECK(lm.forward(ctx, b, 5).loss != doctest::Approx(l0).epsilon(1e-9));
  Context<> ev(1, false);
  CHECK(lm.forward(ev, b, 5).loss != doctest::Approx(l0).epsilon(1e-9));
  auto probes = gradcheck::arena_probes(lm.arena(), [&] {
    loss();
    lm.backward(ctx);
  });
  gradcheck::Options o;
  o.per_tensor = 12;
  CHECK(gradcheck::check(probes, loss, o) > 100);
  // Every tensor receives a gradient (the pre-fill was removed).
  for (const auto& p : probes) {
    double s = 0;
    for (double g : p.grad) s += std::abs(g);
    CAPTURE(p.name);
    CHECK(s > 0);
  }
}

TEST_CASE("LanguageModel: exact NLL equals a naive per-sentence recomputation, importance weights identical") {
  const Config c = tiny_config();
  LMd lm(c, 11);
  const auto& sents = tiny_sentences();
  const Batch b = make_batch(sents, c.vocab_size);
  std::vector<double> naive;
  double mean = 0;
  for (const auto& s : sents) naive.push_back(naive_nll(lm.arena(), c, s)), mean += naive.back() / sents.size();
  Context<> ctx(5, false);  // eval: no dropout
  const Losses l = lm.forward(ctx, b, 0);
  CHECK(l.rec == doctest::Approx(mean).epsilon(1e-12));
  CHECK(l.loss == l.rec);
  CHECK(l.kl == 0);
  CHECK(l.reg == 0);
  CHECK(l.sentences == 5);
  CHECK(l.tokens == 3 + 2 + 5 + 1 + 4 + 5);
  View<double> per = lm.sentence_loss();
  for (int i = 0; i < b.size(); ++i) CHECK(per.data[i] == doctest::Approx(naive[b.order[i]]).epsilon(1e-12));

  const int N = 4;
  const auto pos = ctx.rng.position;
  const ImportanceTerms it = lm.importance_weights(ctx, b, N);
  CHECK(ctx.rng.position == pos);  // eval mode: no noise drawn
  REQUIRE(it.batch == 5);
  REQUIRE(it.samples == N);
  for (int i = 0; i < it.batch; ++i)
    for (int s = 0; s < N; ++s) {
      const size_t k = size_t(i) * N + s;
      CHECK(it.rec[k] == doctest::Approx(naive[b.order[i]]).epsilon(1e-12));
      CHECK(it.log_weight[k] == -it.rec[k]);
      CHECK(it.log_ratio[k] == 0.0);
      CHECK(it.log_weight[k] == it.log_weight[size_t(i) * N]);
    }

  // The corpus-level evaluation: exact NLL with a single pass, PPL over L + 1 tokens.
  const NllReport r = evaluate_nll(lm, sents, 100, 3);
  CHECK(r.samples == 1);
  CHECK(r.has_nll);
  CHECK(r.nll == doctest::Approx(mean).epsilon(1e-12));
  CHECK(r.rec == doctest::Approx(mean).epsilon(1e-12));
  CHECK(r.kl == 0.0);
  CHECK(r.ppl == doctest::Approx(std::exp(mean * 5 / 20)).epsilon(1e-12));
}

TEST_CASE("LanguageModel<float> agrees with the double model of the same seed") {
  const Config c = tiny_config();
  LMd d(c, 21);
  LMf f(c, 21);
  const Batch b = make_batch(tiny_sentences(), c.vocab_size);
  Context<> cd(1, true), cf(1, true);  // training: the same dropout masks in both
  const double ld = d.forward(cd, b, 0).loss, lf = f.forward(cf, b, 0).loss;
  CHECK(lf == doctest::Approx(ld).epsilon(1e-5));
  CHECK(cd.rng.position == cf.rng.position);
}

TEST_CASE("LanguageModel: a few Adam steps lower the training loss") {
  Config c = tiny_config();
  c.dropout = 0;
  c.lr = 0.02;
  LMd lm(c, 4);
  const Batch b = make_batch(tiny_sentences(), c.vocab_size);
  Adam<double> adam(lm.arena(), c);
  Context<> ctx(2, true);
  const double first = lm.forward(ctx, b, 0).loss;
  double last = first;
  for (int step = 0; step < 60; ++step) {
    lm.zero_grad();
    last = lm.forward(ctx, b, step).loss;
    lm.backward(ctx);
    adam.step(lm.arena(), c.lr);
  }
  CHECK(last < 0.7 * first);
}
