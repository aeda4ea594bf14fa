// Whole-model checks: finite-difference gradients of Model and Coupled<Model> (double,
// training mode with dropout, noise fixed by restoring the generator position), the loss
// parts against an independent recomputation, and determinism.
#include <doctest/doctest.h>

#include <cmath>

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
