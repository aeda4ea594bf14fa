// SA-VAE (model/semi_amortized.hpp): the n2n gradient through the unrolled SVI against
// finite differences of the whole objective, K = 0 against the plain VAE, the SVI lowering
// the batch objective, the replayed noise, and evaluation with the refined proposal.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include <couplevae/couplevae.hpp>

#include "fixtures.hpp"
#include "gradcheck.hpp"
#include "temp_dir.hpp"

using namespace couplevae;

namespace {

using VAEd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cpu, double>;
using SAVAEd = SemiAmortized<VAEd>;

Config sa_config(int vocab, int steps) {
  Config c = model_config("sa-vae", "ptb");
  c.vocab_size = vocab;
  c.embed = 5;
  c.hidden = 4;
  c.latent = 3;
  c.mlp_hidden = 4;
  c.kl_start = 0;
  c.kl_anneal_steps = 10;
  c.svi_steps = steps;
  return c;
}

const std::vector<std::vector<int32_t>> sentences = {{4, 5, 6}, {7, 3}, {8, 5, 4, 6, 7}, {5}};

}  // namespace

TEST_CASE("sa-vae: Kim et al.'s SVI settings are the preset") {
  const Config c = model_config("sa-vae", "ptb");
  CHECK(c.svi_steps == 20);
  CHECK(c.svi_lr == 1.0);
  CHECK(c.svi_momentum == 0.5);
  CHECK(c.svi_clip == 5.0);
  CHECK(c.lambda_c == 0.0);
  CHECK(models::SAVAE::structure() == "semi-amortized-gaussian-kl-gru");
}

TEST_CASE("sa-vae: the n2n gradient equals finite differences of the objective through the unrolled SVI") {
  for (double fd : {0.0, 1e-7}) {  // our scaled difference step, and a fixed one as Kim's
    CAPTURE(fd);
    Config c = sa_config(11, 3);
    c.svi_clip = 1e6;  // no clipping: the objective is then smooth in every parameter
    c.svi_fd = fd;
    SAVAEd m(c, 4);
    const Batch b = make_batch(sentences, c.vocab_size);
    // Step 6 of a 10-step ramp: KL weight 0.6 inside the SVI objective and the loss.
    CHECK(gradcheck::check_model(m, b, 6, 4) > 40);
  }
}

TEST_CASE("sa-vae: with K = 0 steps it is the plain VAE, loss and gradients") {
  Config c = sa_config(11, 0);
  c.dropout = 0.3;  // the same masks must be drawn in the same order
  models::VAE vae(c, 8);
  SemiAmortized<models::VAE> sa(c, 8);
  const Batch b = make_batch(sentences, c.vocab_size);
  Context<> c1(5), c2(5);
  vae.zero_grad();
  sa.zero_grad();
  const Losses lv = vae.forward(c1, b, 7), ls = sa.forward(c2, b, 7);
  CHECK(ls.loss == doctest::Approx(lv.loss).epsilon(1e-6));
  CHECK(ls.rec == doctest::Approx(lv.rec).epsilon(1e-6));
  CHECK(ls.kl == doctest::Approx(lv.kl).epsilon(1e-6));
  CHECK(ls.reg == doctest::Approx(lv.reg).epsilon(1e-6));
  vae.backward(c1);
  sa.backward(c2);
  const auto ga = vae.arena().grads().to_host(), gb = sa.arena().grads().to_host();
  double worst = 0, scale = 0;
  for (size_t i = 0; i < ga.size(); ++i)
    worst = std::max(worst, double(std::abs(ga[i] - gb[i]))), scale = std::max(scale, double(std::abs(ga[i])));
  CHECK(scale > 0);
  CHECK(worst <= 1e-5 * scale);
  CHECK(c1.rng.position == c2.rng.position);
}

TEST_CASE("sa-vae: the backward with the forward's kept SVI gradients equals the one that computes them again") {
  Config c = sa_config(11, 5);
  c.dropout = 0.3;  // the recomputed passes must replay the forward's masks
  const Batch b = make_batch(sentences, c.vocab_size);
  std::vector<float> grads[2];
  double loss[2];
  for (int keep = 0; keep < 2; ++keep) {
    c.svi_keep = keep;
    SemiAmortized<models::VAE> m(c, 3);
    Context<> ctx(12);
    m.zero_grad();
    loss[keep] = m.forward(ctx, b, 7).loss;
    m.backward(ctx);
    grads[keep] = m.arena().grads().to_host();
  }
  CHECK(loss[0] == loss[1]);
  CHECK(std::any_of(grads[1].begin(), grads[1].end(), [](float g) { return g != 0; }));
  CHECK(grads[0] == grads[1]);
}

TEST_CASE("sa-vae: the SVI steps lower the batch objective, backward leaves the generator where forward did") {
  Config c = sa_config(11, 20);
  c.dropout = 0;
  SAVAEd m(c, 2);
  const Batch b = make_batch(sentences, c.vocab_size);
  Context<> ctx(9);
  const Losses l = m.forward(ctx, b, 20);  // KL weight 1
  const auto& f = m.svi_objectives();
  REQUIRE(f.size() == 20);
  const double first = std::accumulate(f.begin(), f.begin() + 5, 0.0) / 5;
  const double last = std::accumulate(f.end() - 5, f.end(), 0.0) / 5;
  CHECK(last < first);
  CHECK(std::isfinite(l.loss));
  // The refined parameters moved away from the encoder's.
  const View<double> mu0 = m.initial_mean(), muk = m.refined_mean();
  double moved = 0;
  for (size_t i = 0; i < mu0.size(); ++i) moved += std::abs(muk.data[i] - mu0.data[i]);
  CHECK(moved > 1e-3);
  const uint64_t after_forward = ctx.rng.position;
  m.zero_grad();
  m.backward(ctx);
  CHECK(ctx.rng.position == after_forward);
}

TEST_CASE("sa-vae: each SVI gradient is clipped to svi_clip") {
  Config c = sa_config(11, 4);
  c.dropout = 0;
  c.svi_clip = 1e-3;
  c.svi_momentum = 0;
  SAVAEd m(c, 2);
  const Batch b = make_batch(sentences, c.vocab_size);
  Context<> ctx(1);
  m.forward(ctx, b, 20);
  // Without momentum each step moves mu by at most lr * clip (the mu part alone).
  const View<double> mu0 = m.initial_mean(), muk = m.refined_mean();
  double sq = 0;
  for (size_t i = 0; i < mu0.size(); ++i) sq += (muk.data[i] - mu0.data[i]) * (muk.data[i] - mu0.data[i]);
  CHECK(std::sqrt(sq) <= 4 * c.svi_lr * c.svi_clip * (1 + 1e-9));
  CHECK(std::sqrt(sq) > 0);
}

TEST_CASE("sa-vae: evaluation uses the refined proposal and leaves the parameter gradients alone") {
  Config c = sa_config(11, 5);
  SAVAEd m(c, 3);
  const Batch b = make_batch(sentences, c.vocab_size);
  std::vector<double> pre(m.arena().total());
  Rng(4).normal(pre.data(), pre.size());
  m.arena().grads().from_host(pre.data(), pre.size());
  Context<> ctx(3, false);
  const ImportanceTerms it = m.importance_weights(ctx, b, 6);
  CHECK(m.arena().grads().to_host() == pre);
  // The SVI ran in evaluation mode too (w = 1, no dropout) and lowered the objective.
  REQUIRE(m.svi_objectives().size() == 5);
  CHECK(m.svi_objectives().back() < m.svi_objectives().front());
  REQUIRE(it.log_weight.size() == sentences.size() * 6);
  for (size_t i = 0; i < it.log_weight.size(); ++i) {
    CHECK(std::isfinite(it.log_weight[i]));
    CHECK(it.log_weight[i] == doctest::Approx(-it.rec[i] - it.log_ratio[i]));
  }
  // Through evaluate_nll: the importance-weighted bound is below the ELBO of its samples.
  const NllReport r = evaluate_nll(m, sentences, 6, 0);
  CHECK(r.has_nll);
  CHECK(r.nll <= r.rec + r.kl + 1e-9);
  CHECK(std::isfinite(r.kl));  // a Monte Carlo estimate: may dip below 0 near the prior
}

TEST_CASE("sa-vae: a trainer run resumed from its checkpoint ends where the uninterrupted run does, bit for bit") {
  const Dataset d = fixtures::tiny_corpus({{"a", "b"}, {"c", "d"}});
  Config c = sa_config(int(d.vocab.size()), 4);
  c.batch_size = 4;
  c.valid_every = 3;
  c.valid_samples = 2;
  TempDir tmp;
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "sa-vae";
  o.log = &log;
  o.steps = 5;
  o.out_dir = tmp / "full";
  models::SAVAE full(c, 1);
  train(full, d, o);
  o.steps = 3;
  o.out_dir = tmp / "part";
  models::SAVAE part(c, 1);
  train(part, d, o);
  o.steps = 5;
  o.resume = tmp / "part/last.safetensors";
  models::SAVAE resumed(c, 42);
  train(resumed, d, o);
  CHECK(full.arena().values().to_host() == resumed.arena().values().to_host());
}
