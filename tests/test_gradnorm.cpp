// The gradient-norm analysis (reference.md §14) against finite differences through the
// public parts: d(sum rec)/de, dKL/de and the Jacobian dh/de.
#include <doctest/doctest.h>

#include <cmath>

#include <couplevae/couplevae.hpp>
#include <couplevae/eval/grad_norms.hpp>

using namespace couplevae;

namespace {
using VAEd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cpu, double>;

Config tiny() {
  Config c = Config::preset("ptb");
  c.vocab_size = 11;
  c.embed = 4;
  c.hidden = 3;
  c.latent = 2;
  c.mlp_hidden = 5;
  return c;
}

// Caches for re-running the stochastic path downstream of e with the noise fixed.
template <class M>
struct Downstream {
  Context<> ctx{5, false};
  typename M::posterior_module::Cache pc;
  typename nn::MLP<double>::Cache mc;
  typename M::decoder_module::Cache dc;
  std::vector<double> h, rec;
  double sum_rec = 0, sum_kl = 0;
};
}  // namespace

TEST_CASE("gradient norms: rec, reg and the Jacobian dh/de match finite differences (eval mode)") {
  Config c = tiny();
  VAEd model(c, 3);
  const Batch b = make_batch({{4, 5, 6}, {7, 8}, {9, 10, 4, 5}}, c.vocab_size);
  Context<> ctx(5, false);
  // The analysis on the model's own forward: same noise position for the posterior draw.
  const GradNormTerms g = model.gradient_norms(ctx, b);
  const int nb = b.size(), H2 = 2 * c.hidden, E = c.embed;
  std::vector<double> e(model.encoded().data, model.encoded().data + nb * H2);
  model.zero_grad();
  // Replay the model's posterior draw: encode draws nothing in eval mode, so the
  // posterior's eps came from position 0 of a generator seeded 5.
  Downstream<VAEd> d;
  auto run_at = [&](std::vector<double>& ev) {
    d.ctx.rng.position = 0;
    const int nbb = b.size();
    model.post.sample(d.ctx, model.arena(), View<double>{ev.data(), nbb, H2}, d.pc);
    d.h.assign(size_t(nbb) * E, 0.0);
    d.rec.assign(nbb, 0.0);
    model.mlp.forward(d.ctx, model.arena(), View<double>{d.pc.z.data(), nbb, c.latent}, View<double>{d.h.data(), nbb, E}, d.mc);
    model.dec.forward(d.ctx, model.arena(), model.emb, b, View<double>{d.h.data(), nbb, E}, View<double>{d.rec.data(), nbb, 1}, d.dc);
    d.sum_rec = 0, d.sum_kl = 0;
    for (int i = 0; i < nbb; ++i) d.sum_rec += d.rec[i], d.sum_kl += d.pc.kl.data()[i];
  };
  const double step = 1e-5;
  std::vector<double> fd_rec(nb, 0.0), fd_reg(nb, 0.0), fd_jac(nb, 0.0), hnorm(nb, 0.0);
  run_at(e);
  for (int i = 0; i < nb; ++i)
    for (int k = 0; k < E; ++k) hnorm[i] += d.h[i * E + k] * d.h[i * E + k];
  for (int i = 0; i < nb; ++i)
    for (int j = 0; j < H2; ++j) {
      const double x0 = e[i * H2 + j];
      e[i * H2 + j] = x0 + step;
      run_at(e);
      const double rp = d.sum_rec, kp = d.sum_kl;
      const auto hp = d.h;
      e[i * H2 + j] = x0 - step;
      run_at(e);
      e[i * H2 + j] = x0;
      fd_rec[i] += std::pow((rp - d.sum_rec) / (2 * step), 2);
      fd_reg[i] += std::pow((kp - d.sum_kl) / (2 * step), 2);
      for (size_t q = 0; q < hp.size(); ++q) fd_jac[i] += std::pow((hp[q] - d.h[q]) / (2 * step), 2);
    }
  for (int i = 0; i < nb; ++i) {
    CAPTURE(i);
    CHECK(g.rec[i] == doctest::Approx(fd_rec[i]).epsilon(1e-5));
    CHECK(g.reg[i] == doctest::Approx(fd_reg[i]).epsilon(1e-5));
    CHECK(g.h_ratio[i] == doctest::Approx(fd_jac[i] / hnorm[i]).epsilon(1e-5));
    CHECK(g.rec[i] > 0);
  }
}

TEST_CASE("gradient norms: coupled terms, the report's plain and squared means") {
  Config c = tiny();
  Coupled<VAEd> model(c, 4);
  const Batch b = make_batch({{4, 5, 6}, {7, 8}}, c.vocab_size);
  Context<> ctx(2, true);
  const GradNormTerms g = model.gradient_norms(ctx, b);
  REQUIRE(g.rec_c.size() == 2);
  for (int i = 0; i < 2; ++i) {
    // ||a + b||^2 <= (||a|| + ||b||)^2, and equality fails generically.
    CHECK(g.rec_sum[i] <= std::pow(std::sqrt(g.rec[i]) + std::sqrt(g.rec_c[i]), 2) + 1e-12);
    CHECK(g.rec_c[i] > 0);
  }
  std::vector<std::vector<int32_t>> sents = {{4, 5, 6}, {7, 8}, {9, 4}, {5, 5, 5, 6}};
  const GradNormReport r = evaluate_grad_norms(model, sents, 1, size_t(-1), 2);
  CHECK(r.sentences == 4);
  for (const char* k : {"grad_rec", "grad_rec_c", "grad_rec_sum", "grad_reg", "grad_h"}) {
    CAPTURE(k);
    REQUIRE(r.values.count(k) == 1);
    REQUIRE(r.values.count(std::string(k) + "_sq") == 1);
    // Jensen: mean of squares >= square of the mean.
    CHECK(r.values.at(std::string(k) + "_sq") >= r.values.at(k) * r.values.at(k) - 1e-12);
  }
}
