// Bucketed batches (core/batch.hpp): the padded rectangle a CUDA Graph is captured for.
// Their layout, the GRU's carrying of the state through padding, and the claim that makes
// them usable: every model's loss parts and every gradient equal the packed batch's (noise
// fixed: no dropout, the same generator position), plus finite-difference checks of whole
// models on bucketed batches.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include <couplevae/couplevae.hpp>

#include "gradcheck.hpp"

using namespace couplevae;

namespace {
const std::vector<std::vector<int32_t>> sentences = {{4, 5, 6}, {7, 3}, {8, 9, 10, 11, 12}, {5}, {6, 6, 7, 8}};
// 17 tokens in 6 sentences: a bucketed batch of these lists 24 compact encoder rows (7
// fillers) and 30 output rows (7 fillers).
const std::vector<std::vector<int32_t>> with_filler = {{4, 5, 6}, {7, 3}, {8, 9, 10, 11, 12}, {5}, {6, 6, 7, 8}, {9, 10}};

Config small(int vocab) {
  Config c = Config::preset("ptb");
  c.vocab_size = vocab;
  c.embed = 6;
  c.hidden = 5;
  c.latent = 3;
  c.mlp_hidden = 7;
  c.cnn_channels = 4;
  c.cnn_dilations = {1, 2};
  c.kl_start = 0;
  c.kl_anneal_steps = 10;
  c.dropout = 0;  // dropout draws one number per row, so its noise differs with the row count
  return c;
}

struct Run {
  Losses l;
  std::vector<float> grads;
};

template <class M>
Run run(M& model, const Batch& b, long step) {
  Context<cpu> ctx(99, true);
  model.zero_grad();
  Run r;
  r.l = model.forward(ctx, b, step);
  model.backward(ctx);
  r.grads = model.arena().grads().to_host();
  return r;
}
}  // namespace

TEST_CASE("bucketed batches: the rectangle, its padding and the unchanged token count") {
  const Batch p = make_batch(sentences, 13);
  const Batch b = make_batch(sentences, 13, 4);
  CHECK(p.bucket() == 0);
  CHECK(b.bucket() == 8);  // longest 5, rounded up to 8
  CHECK(b.enc.padded);
  CHECK(b.enc.steps == 8);
  CHECK(b.dec.steps == 10);
  CHECK(b.enc.rows == 5 * 8);
  CHECK(b.dec.rows == 5 * 10);
  CHECK(b.lengths == p.lengths);
  CHECK(b.order == p.order);
  CHECK(b.target_tokens() == p.target_tokens());
  CHECK(b.target_tokens() == 3 + 1 + 2 + 1 + 5 + 1 + 1 + 1 + 4 + 1);
  // Every real row holds the packed batch's token; padding holds <pad> and no target.
  int real_dec = 0;
  for (int t = 0; t < b.dec.steps; ++t)
    for (int i = 0; i < b.size(); ++i) {
      const int r = b.dec.row(t, i);
      if (b.dec.real(t, i)) {
        ++real_dec;
        CHECK(b.dec_inputs[r] == p.dec_inputs[p.dec.row(t, i)]);
        CHECK(b.dec_targets[r] == p.dec_targets[p.dec.row(t, i)]);
      } else {
        CHECK(b.dec_inputs[r] == pad_id);
        CHECK(b.dec_targets[r] == -1);
      }
    }
  CHECK(real_dec == p.dec.rows);
  for (int t = 0; t < b.enc.steps; ++t)
    for (int i = 0; i < b.size(); ++i)
      CHECK(b.enc_tokens[b.enc.row(t, i)] == (b.enc.real(t, i) ? p.enc_tokens[p.enc.row(t, i)] : pad_id));
  const std::vector<int32_t>& keep = b.enc.keep;
  CHECK(std::count(keep.begin(), keep.end(), 1) == p.enc.rows);
  CHECK(p.enc.keep.empty());
  // The real rows in row order, then fillers: 15 tokens, 20 compact rows (4 x batch); the
  // decoder's 25 real rows among 30, the LM's 20 among 25.
  for (const auto& [pk, real, compact] : {std::tuple(&b.enc, 15, 20), std::tuple(&b.dec, 25, 30)}) {
    REQUIRE(int(pk->real_rows.size()) == compact);
    std::vector<int32_t> expect;
    for (int r = 0; r < pk->rows; ++r)
      if (pk->keep[r]) expect.push_back(r);
    CHECK(int(expect.size()) == real);
    CHECK(std::equal(expect.begin(), expect.end(), pk->real_rows.begin()));
    CHECK(std::all_of(pk->real_rows.begin() + real, pk->real_rows.end(), [](int32_t r) { return r == -1; }));
  }
  const std::vector<int32_t> lm_rows = b.dec.drop_first_step().real_rows;
  CHECK(lm_rows.size() == 25);
  CHECK(std::count(lm_rows.begin(), lm_rows.end(), -1) == 5);
  CHECK(p.enc.real_rows.empty());
  // A bucket exactly as long as the longest sentence still pads the shorter ones.
  CHECK(make_batch(sentences, 13, 5).enc.steps == 5);
  CHECK(make_batch(sentences, 13, 1).enc.rows == 25);
  CHECK_THROWS_WITH_AS(make_batch(sentences, 13, -1), doctest::Contains("bucket must be >= 0"), Error);
  // The vocabulary layer's rows: all decoder rows of steps >= 1 when packed; the real ones
  // (the same targets and sentences, in the packed order of steps) plus fillers when
  // bucketed: 15 tokens round up to 20 = 4 x batch compact rows, so 20 + 5 output rows for
  // 20 real ones.
  const OutputRows &po = p.outputs, &bo = b.outputs;
  CHECK(po.identity);
  CHECK(po.count() == p.dec.rows - p.size());
  for (int k = 0; k < po.count(); ++k) {
    CHECK(po.target[k] == p.dec_targets[p.size() + k]);
    CHECK(po.item[k] >= 0);
    CHECK(po.item[k] < p.size());
  }
  CHECK_FALSE(bo.identity);
  CHECK(bo.count() == 25);
  CHECK(std::equal(po.item.begin(), po.item.end(), bo.item.begin()));
  CHECK(std::equal(po.target.begin(), po.target.end(), bo.target.begin()));
  for (int k = 0; k < bo.count(); ++k)
    if (bo.target[k] >= 0) CHECK(b.dec_targets[b.size() + bo.source[k]] == bo.target[k]);
  for (int k = 20; k < 25; ++k) CHECK(bo.target[k] == -1);
  // 7 tokens round up to 24 compact rows: 13 real output rows, 30 with fillers
  const Batch six = make_batch({{4}, {5, 6}, {7}, {8}, {9}, {10}}, 13, 1);
  CHECK(six.outputs.count() == 30);
  for (int k = 0; k < 30; ++k) {
    CHECK((k < 13) == (six.outputs.target[k] >= 0));
    if (k >= 13) CHECK(six.outputs.source[k] == 0);
  }
  // The LM's packing: the decoder's without step 0.
  const Packing lm = b.dec.drop_first_step();
  CHECK(lm.padded);
  CHECK(lm.steps == 9);
  CHECK(lm.rows == b.dec.rows - b.size());
  CHECK(p.dec.drop_first_step().rows == p.dec.rows - p.size());
  // Both packings take items longest first (the cuda kernels skip a tile of rows whose first
  // row is padding, which is right only in that order); other orders are refused.
  CHECK(Packing::from_steps({3, 3, 1}).rows == 7);
  CHECK_THROWS_WITH_AS(Packing::from_steps({1, 3}), doctest::Contains("non-increasing order"), Error);
  CHECK_THROWS_WITH_AS(Packing::rectangle({2, 1, 2}, 4, 5), doctest::Contains("Packing::rectangle: the items' step"), Error);
}

TEST_CASE("select_rows and replicate_batch: the batch make_batch builds from the chosen sentences") {
  // Sorted, `sentences` reads {8..12} (5), {6,6,7,8} (4), {4,5,6} (3), {7,3} (2), {5} (1).
  for (int bucket : {0, 3}) {
    CAPTURE(bucket);
    const Batch b = make_batch(sentences, 13, bucket);
    auto sorted = [&](int i) { return sentences[size_t(b.order[i])]; };
    auto same = [&](const Batch& got, const std::vector<int>& rows) {
      std::vector<std::vector<int32_t>> chosen;
      for (int r : rows) chosen.push_back(sorted(r));
      const Batch want = make_batch(chosen, 13);
      CHECK(got.order == rows);
      CHECK(got.lengths == want.lengths);
      CHECK(got.enc.item_steps == want.enc.item_steps);
      CHECK(got.dec.item_steps == want.dec.item_steps);
      CHECK(got.enc_tokens == want.enc_tokens);
      CHECK(got.dec_inputs == want.dec_inputs);
      CHECK(got.dec_targets == want.dec_targets);
      CHECK(got.outputs.identity);
      CHECK(got.outputs.item == want.outputs.item);
      CHECK(got.outputs.target == want.outputs.target);
    };
    same(select_rows(b, {1, 2, 2, 4}), {1, 2, 2, 4});
    same(select_rows(b, {3}), {3});
    same(replicate_batch(b, 3), {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4});
    CHECK_THROWS_WITH_AS(select_rows(b, {2, 1}), doctest::Contains("non-increasing"), Error);
    CHECK_THROWS_WITH_AS(select_rows(b, {0, 5}), doctest::Contains("row 5 is not in the batch"), Error);
    CHECK_THROWS_WITH_AS(select_rows(b, {}), doctest::Contains("no rows"), Error);
  }
}

TEST_CASE("bucketed batches: a GRU carries each sequence's state through the padding, both directions") {
  using G = nn::GRU<double, cpu>;
  Arena<double, cpu> ar;
  G fwd(ar, "f", 3, 4, false), bwd(ar, "b", 3, 4, true);
  ar.finalize();
  ar.initialise(5);
  const Batch p = make_batch(sentences, 13), b = make_batch(sentences, 13, 4);
  auto inputs = [](const Packing& pk) {
    std::vector<double> x(size_t(pk.rows) * 3);
    for (int t = 0; t < pk.steps; ++t)
      for (int i = 0; i < pk.active[t]; ++i)
        for (int k = 0; k < 3; ++k) x[size_t(pk.row(t, i)) * 3 + k] = std::sin(1.0 + t * 0.7 + i * 1.3 + k * 0.4);
    return x;
  };
  auto xp = inputs(p.enc), xb = inputs(b.enc);
  Context<cpu> ctx(1);
  for (const G* g : {&fwd, &bwd}) {
    G::Cache cp, cb;
    g->forward(ctx, ar, View<double>{xp.data(), p.enc.rows, 3}, p.enc, cp);
    g->forward(ctx, ar, View<double>{xb.data(), b.enc.rows, 3}, b.enc, cb);
    const auto hp = cp.h_final.to_host(), hb = cb.h_final.to_host();
    REQUIRE(hp.size() == hb.size());
    for (size_t i = 0; i < hp.size(); ++i) CHECK(hb[i] == doctest::Approx(hp[i]).epsilon(1e-13));
    // Every real row's state is the packed one; padding rows repeat the last real state
    // (forward) or hold the zero state (reverse, before each sequence starts).
    const auto sp = cp.states.to_host(), sb = cb.states.to_host();
    for (int t = 0; t < b.enc.steps; ++t)
      for (int i = 0; i < b.size(); ++i)
        for (int k = 0; k < 4; ++k) {
          const double got = sb[size_t(b.enc.row(t, i)) * 4 + k];
          if (b.enc.real(t, i))
            CHECK(got == doctest::Approx(sp[size_t(p.enc.row(t, i)) * 4 + k]).epsilon(1e-13));
          else if (!g->reverse)
            CHECK(got == doctest::Approx(sp[size_t(p.enc.row(b.lengths[i] - 1, i)) * 4 + k]).epsilon(1e-13));
          else
            CHECK(got == 0.0);
        }
  }
}

TEST_CASE("bucketed batches: every model's loss parts and gradients equal the packed batch's") {
  const Batch p = make_batch(with_filler, 13), b = make_batch(with_filler, 13, 4);
  REQUIRE(b.outputs.count() == 30);
  for (const std::string& name : model_names()) {
    CAPTURE(name);
    with_model(name, [&]<class M>() {
      Config c = small(13);
      c.lambda_c = model_config(name, "ptb").lambda_c > 0 ? 0.7 : 0.0;
      M model(c, 3);
      const Run a = run(model, p, 4), r = run(model, b, 4);
      CHECK(r.l.loss == doctest::Approx(a.l.loss).epsilon(1e-5));
      CHECK(r.l.rec == doctest::Approx(a.l.rec).epsilon(1e-5));
      CHECK(r.l.kl == doctest::Approx(a.l.kl).epsilon(1e-5));
      CHECK(r.l.reg == doctest::Approx(a.l.reg).epsilon(1e-5));
      CHECK(r.l.rec_c == doctest::Approx(a.l.rec_c).epsilon(1e-5));
      CHECK(r.l.couple == doctest::Approx(a.l.couple).epsilon(1e-5));
      CHECK(r.l.tokens == a.l.tokens);
      REQUIRE(r.grads.size() == a.grads.size());
      double scale = 0, worst = 0;
      for (float g : a.grads) scale = std::max(scale, double(std::abs(g)));
      REQUIRE(scale > 0);
      for (size_t i = 0; i < a.grads.size(); ++i) worst = std::max(worst, double(std::abs(r.grads[i] - a.grads[i])));
      CAPTURE(scale);
      // SA-VAE differences float gradients over a step of about sqrt(float epsilon) for its
      // Hessian-vector products, which magnifies rounding differences about 1/r times.
      const double tol = requires { M::is_semi_amortized; } ? 2e-5 : 2e-6;
      CHECK(worst <= tol * scale);
    });
  }
}

TEST_CASE("bucketed batches: finite-difference gradients of whole models (double)") {
  using VAEd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cpu, double>;
  using CNNd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<DilatedCNN>, cpu, double>;
  using LMd = LanguageModel<Decoder<GRU>, cpu, double>;
  Config c = small(13);
  c.dropout = 0.3;  // on: gradcheck fixes the noise by restoring the generator position
  c.lambda_c = 1.5;
  const Batch b = make_batch(with_filler, 13, 4);
  REQUIRE(b.outputs.count() == 30);
  {
    Coupled<VAEd> m(c, 2);
    CHECK(gradcheck::check_model(m, b, 5, 5) > 100);
  }
  {
    LMd m(c, 4);
    CHECK(gradcheck::check_model(m, b, 5, 5) > 40);
  }
  {
    CNNd m(c, 6);
    CHECK(gradcheck::check_model(m, b, 5, 5) > 60);
  }
}
