// Whole-model checks: finite-difference gradients of Model and Coupled<Model> (double,
// training mode with dropout, noise fixed by restoring the generator position), the loss
// parts against an independent recomputation, and determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <span>

#include <couplevae/couplevae.hpp>

#include "gradcheck.hpp"

using namespace couplevae;

namespace {
using VAEd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cpu, double>;
using CVAEd = Coupled<VAEd>;

}  // namespace

TEST_CASE("Model<Gaussian, KL, GRU>: whole-model gradient check (double, dropout on, KL weight 0.5)") {
  Config c = gradcheck::tiny_model_config();
  VAEd model(c, 7);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> ctx(123, true);
  CHECK(model.forward(ctx, b, 5).kl_weight == doctest::Approx(0.5));
  gradcheck::check_model_gradients(model, b, 5);
}

TEST_CASE("Coupled<Model>: whole-model gradient check, rational-quadratic and euclidean coupling") {
  for (const char* kind : {"rq", "euclidean"}) {
    CAPTURE(kind);
    Config c = gradcheck::tiny_model_config();
    c.coupling = kind;
    c.lambda_c = 2.5;  // large, so a wrong coupling gradient shows
    CVAEd model(c, 8);
    gradcheck::check_model_gradients(model, gradcheck::tiny_model_batch(c.vocab_size), 5);
  }
}

TEST_CASE("Coupled<Model>: loss parts recomputed independently") {
  Config c = gradcheck::tiny_model_config();
  CVAEd model(c, 9);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> ctx(5, false);  // eval: no dropout
  const Losses l = model.forward(ctx, b, 5);
  // The coupled decoding signal equals MLP^c(mu^c(e)): recompute it through the public
  // parts, then the coupling loss, and the total from the parts.
  const int nb = b.size(), E = c.embed;
  View<double> hv = model.signal(), ev = model.encoded();
  std::vector<double> hs(hv.data, hv.data + nb * E);
  typename nn::MLP<double>::Cache mc;
  std::vector<double> zc(nb * c.latent), hc(nb * E);
  Arena<double>& ar = model.arena();
  model.post_c.mu.forward(ctx, ar, ev, View<double>{zc.data(), nb, c.latent});
  model.mlp_c.forward(ctx, ar, View<double>{zc.data(), nb, c.latent}, View<double>{hc.data(), nb, E}, mc);
  for (int i = 0; i < nb * E; ++i) CHECK(hc[i] == doctest::Approx(model.coupled_signal().data[i]).epsilon(1e-12));
  double couple = 0;
  for (int i = 0; i < nb; ++i) {
    double d = 0;
    for (int k = 0; k < E; ++k) d += std::pow(hs[i * E + k] - hc[i * E + k], 2);
    for (double s : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}) couple -= s * 2 * c.latent / (s * 2 * c.latent + d);
  }
  couple /= nb;
  CHECK(l.couple == doctest::Approx(couple).epsilon(1e-12));
  CHECK(l.couple < 0);
  CHECK(l.couple > -7);
  CHECK(l.loss == doctest::Approx(l.rec + l.reg + l.rec_c + c.lambda_c * l.couple).epsilon(1e-12));
  CHECK(l.reg == doctest::Approx(0.5 * l.kl).epsilon(1e-12));
  // Untrained decoders predict close to uniformly: rec per sentence near (L+1) log V.
  const double uniform = double(b.target_tokens()) / nb * std::log(double(c.vocab_size));
  CHECK(l.rec == doctest::Approx(uniform).epsilon(0.3));
  CHECK(l.rec_c == doctest::Approx(uniform).epsilon(0.3));
}

TEST_CASE("Model: the same seed and noise position give the same loss, another seed differs") {
  Config c = gradcheck::tiny_model_config();
  using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
  VAE a(c, 1), a2(c, 1), other(c, 2);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> x(3), y(3), w(3);
  const double la = a.forward(x, b, 5).loss, lb = a2.forward(y, b, 5).loss, lo = other.forward(w, b, 5).loss;
  CHECK(la == lb);
  CHECK(la != lo);
}

TEST_CASE("Coupled<Model>: its decoders side by side give what one after another gives, masks and gradients alike") {
  using Dec = typename CVAEd::decoder_module;
  using Run = DecoderRun<Dec, double>;
  static_assert(requires(Context<cpu>& ctx, Arena<double>& ar, const nn::Embedding<double>& emb, const Batch& b,
                         std::span<const Run> runs) { Dec::forward_each(ctx, ar, emb, b, runs); },
                "Decoder<GRU> runs its decoders side by side");
  Config c = gradcheck::tiny_model_config();
  CVAEd model(c, 11);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  const int nb = b.size(), E = c.embed;
  Arena<double>& ar = model.arena();
  Rng init(4);
  std::vector<double> h1(size_t(nb) * E), h2(h1.size()), drec1(nb), drec2(nb);
  for (auto* v : {&h1, &h2, &drec1, &drec2}) init.normal(v->data(), v->size());
  // One pass: forward (dropout on) and backward, side by side or one decoder after the other.
  struct Out {
    std::vector<double> rec1, rec2, dh1, dh2, grads;
    uint64_t position = 0;
  };
  auto pass = [&](bool side_by_side) {
    Context<> ctx(21, true);
    ctx.rng.position = 1000;
    Out o;
    o.rec1.resize(size_t(nb)), o.rec2.resize(size_t(nb));
    o.dh1.assign(h1.size(), 0.0), o.dh2.assign(h1.size(), 0.0);
    View<double> vh1{h1.data(), nb, E}, vh2{h2.data(), nb, E}, vr1{o.rec1.data(), nb, 1}, vr2{o.rec2.data(), nb, 1};
    View<double> vd1{drec1.data(), nb, 1}, vd2{drec2.data(), nb, 1}, vdh1{o.dh1.data(), nb, E},
        vdh2{o.dh2.data(), nb, E};
    typename Dec::Cache c1, c2;
    model.zero_grad();
    if (side_by_side) {
      const Run f[] = {{model.dec, vh1, vr1, {}, c1}, {model.dec_c, vh2, vr2, {}, c2}};
      forward_decoders(ctx, ar, model.emb, b, f);
      const Run g[] = {{model.dec_c, vh2, vd2, vdh2, c2}, {model.dec, vh1, vd1, vdh1, c1}};
      backward_decoders(ctx, ar, model.emb, b, g);
    } else {
      model.dec.forward(ctx, ar, model.emb, b, vh1, vr1, c1);
      model.dec_c.forward(ctx, ar, model.emb, b, vh2, vr2, c2);
      model.dec_c.backward(ctx, ar, model.emb, b, vh2, vd2, vdh2, c2);
      model.dec.backward(ctx, ar, model.emb, b, vh1, vd1, vdh1, c1);
    }
    o.position = ctx.rng.position;
    o.grads.assign(ar.grads().data(), ar.grads().data() + ar.total());
    return o;
  };
  const Out a = pass(true), s = pass(false);
  CHECK(a.position == s.position);
  CHECK(a.position > 1000);  // the masks were drawn
  CHECK(a.rec1 == s.rec1);
  CHECK(a.rec2 == s.rec2);
  CHECK(a.rec1 != a.rec2);
  CHECK(a.dh1 == s.dh1);
  CHECK(a.dh2 == s.dh2);
  CHECK(a.grads == s.grads);
  CHECK(std::any_of(a.dh1.begin(), a.dh1.end(), [](double x) { return x != 0; }));
  // With 3 runs the contract is broken: a clear error.
  typename Dec::Cache c3;
  std::vector<double> r3(nb);
  View<double> vh{h1.data(), nb, E}, vr{r3.data(), nb, 1};
  const Run three[] = {{model.dec, vh, vr, {}, c3}, {model.dec, vh, vr, {}, c3}, {model.dec, vh, vr, {}, c3}};
  Context<> ctx(1, true);
  auto run_three = [&] { forward_decoders(ctx, ar, model.emb, b, three); };
  CHECK_THROWS_WITH(run_three(), doctest::Contains("at most two decoders"));
}

namespace {
// One posterior family: rows {0..4} of e drawn together under row ids, then row 3 alone and
// rows {3, 1} in another order: each row's z is the same wherever it sits (noise by row,
// posterior/noise.hpp), and the generator is left where it was; without ids the draw comes
// from the generator (and row 3 alone gets row 0's noise, so it differs).
template <class P>
void check_row_noise(const char* family) {
  CAPTURE(family);
  using Post = typename P::template module<double, cpu>;
  Arena<double> ar;
  Post post(ar, "q", 4, 3);
  ar.finalize();
  ar.initialise(3);
  std::vector<double> e(5 * 4);
  Rng(4).normal(e.data(), e.size());
  const uint64_t key = 0xfeed;
  const std::vector<uint64_t> ids = sentence_noise_ids({0, 1, 2, 3, 4}, 100, 2, 1);
  Context<> ctx(9, false);
  typename Post::Cache all, alone, pair, plain;
  post.sample(ctx, ar, View<double>{e.data(), 5, 4}, all, RowNoise{key, ids.data()});
  CHECK(ctx.rng.position == 0);
  const std::vector<uint64_t> id3 = {ids[3]}, id31 = {ids[3], ids[1]};
  post.sample(ctx, ar, View<double>{e.data() + 12, 1, 4}, alone, RowNoise{key, id3.data()});
  std::vector<double> e31(e.begin() + 12, e.begin() + 16);
  e31.insert(e31.end(), e.begin() + 4, e.begin() + 8);
  post.sample(ctx, ar, View<double>{e31.data(), 2, 4}, pair, RowNoise{key, id31.data()});
  const auto z = all.z.to_host(), z3 = alone.z.to_host(), z31 = pair.z.to_host();
  const auto lq = all.logq.to_host(), lq3 = alone.logq.to_host();
  for (int k = 0; k < 3; ++k) {
    CHECK(z3[size_t(k)] == doctest::Approx(z[9 + size_t(k)]).epsilon(1e-12));
    CHECK(z31[size_t(k)] == doctest::Approx(z[9 + size_t(k)]).epsilon(1e-12));
    CHECK(z31[3 + size_t(k)] == doctest::Approx(z[3 + size_t(k)]).epsilon(1e-12));
  }
  CHECK(lq3[0] == doctest::Approx(lq[3]).epsilon(1e-12));
  post.sample(ctx, ar, View<double>{e.data() + 12, 1, 4}, plain);
  CHECK(ctx.rng.position > 0);
  CHECK(plain.z.to_host()[0] != doctest::Approx(z[9]).epsilon(1e-6));
}
}  // namespace

TEST_CASE("posteriors: noise by row gives a row the same sample wherever it sits (Gaussian, Flow, vMF)") {
  check_row_noise<Posterior<Gaussian>>("gaussian");
  check_row_noise<Posterior<Flow<2>>>("flow");
  check_row_noise<Posterior<VMF>>("vmf");
}
