// The WAE's Regularizer<MMD> and the DAE's Posterior<Deterministic> + Regularizer<Zero>:
//   - the IMQ MMD estimate against a straightforward recomputation (ordered pairs, scales
//     outermost, kernel written as 1 / (1 + r2 / C));
//   - its statistics: near zero (within bounds measured from repeated draws) for samples of
//     the prior, unbiased (the mean over many draws within 4 standard errors of 0, a test
//     the biased V-statistic fails), clearly positive for shifted or scaled samples;
//   - finite-difference gradients of the regulariser (prior samples replayed by restoring
//     ctx.rng.position) and of the deterministic posterior, with pre-filled gradients;
//   - the KL weight's cap 0.8; B = 1;
//   - whole-model gradient checks of the WAE, its Coupled<> and the DAE (double, dropout on),
//     and their losses recomputed from their parts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>
#include <couplevae/backend/mmd_ops.hpp>
#include <couplevae/posterior/deterministic.hpp>
#include <couplevae/regularizer/mmd.hpp>
#include <couplevae/regularizer/zero.hpp>

#include "gradcheck.hpp"

using namespace couplevae;

namespace {

using MMDReg = Regularizer<MMD>::module<double, cpu>;
using WAEd = Model<Posterior<Gaussian>, Regularizer<MMD>, Decoder<GRU>, cpu, double>;
using CWAEd = Coupled<WAEd>;
using DAEd = Model<Posterior<Deterministic>, Regularizer<Zero>, Decoder<GRU>, cpu, double>;

static_assert(!Posterior<Deterministic>::stochastic, "the DAE's posterior is deterministic");
static_assert(Regularizer<MMD>::mmd_weight == 10.0 && Regularizer<MMD>::kl_cap == 0.8);

// start + L_reg of one forward: forward accumulates L_reg into a double of the backend's
// memory (a host double on cpu).
template <class Reg>
double reg_value(const Reg& reg, Context<>& ctx, long step, View<double> kl, View<double> z, typename Reg::Cache& c,
                 double start = 0) {
  double out = start;
  reg.forward(ctx, step, kl, z, &out, c);
  return out;
}

std::vector<double> randn(size_t n, uint64_t seed, double mean = 0, double sd = 1) {
  std::vector<double> v(n);
  Rng(seed).normal(v.data(), n);
  for (double& x : v) x = mean + sd * x;
  return v;
}

// The estimate written out independently: every ordered pair, the scales outermost, the
// kernel as 1 / (1 + r2 / C) with C = 2 Z s.
// With include_diagonal, the biased V-statistic (i = j terms kept, divided by n^2).
double reference_mmd(const std::vector<double>& q, const std::vector<double>& p, int n, int Z,
                     bool include_diagonal = false) {
  auto r2 = [Z](const double* a, const double* b) {
    double s = 0;
    for (int k = 0; k < Z; ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
    return s;
  };
  double total = 0;
  for (double s : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}) {
    const double C = 2.0 * Z * s;
    double kqq = 0, kpp = 0, kqp = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        kqp += 1.0 / (1.0 + r2(&q[i * Z], &p[j * Z]) / C);
        if (i == j && !include_diagonal) continue;
        kqq += 1.0 / (1.0 + r2(&q[i * Z], &q[j * Z]) / C);
        kpp += 1.0 / (1.0 + r2(&p[i * Z], &p[j * Z]) / C);
      }
    total += (kqq + kpp) / (include_diagonal ? double(n) * n : n * (n - 1.0)) - 2.0 * kqp / (double(n) * n);
  }
  return total;
}

struct Moments {
  double mean = 0, sd = 0, se = 0;
};
Moments moments(const std::vector<double>& x) {
  Moments m;
  for (double v : x) m.mean += v;
  m.mean /= double(x.size());
  double ss = 0;
  for (double v : x) ss += (v - m.mean) * (v - m.mean);
  m.sd = std::sqrt(ss / double(x.size() - 1));
  m.se = m.sd / std::sqrt(double(x.size()));
  return m;
}

// The kernel's estimate for `draws` independent pairs of sets q ~ N(mean, sd^2 I), p ~ N(0, I),
// n rows each of Z entries. `biased` adds the i = j terms (the V-statistic) for contrast.
std::vector<double> mmd_draws(int draws, int n, int Z, double mean, double sd, uint64_t seed, bool biased = false) {
  double C[7];
  Regularizer<MMD>::kernel_constants(Z, C);
  std::vector<double> out(draws), q(size_t(n) * Z), p(size_t(n) * Z);
  Rng rng(seed);
  for (int d = 0; d < draws; ++d) {
    rng.normal(q.data(), q.size());
    rng.normal(p.data(), p.size());
    for (double& x : q) x = mean + sd * x;
    out[d] = biased ? reference_mmd(q, p, n, Z, true) : mmd_ops<cpu>::imq_mmd(n, n, Z, q.data(), p.data(), C, 7);
  }
  return out;
}


}  // namespace

TEST_CASE("mmd: the kernel and the regulariser equal a straightforward recomputation") {
  const int n = 5, Z = 3;
  const auto q = randn(n * Z, 1, 0.3, 1.5), p = randn(n * Z, 2);
  double C[7];
  Regularizer<MMD>::kernel_constants(Z, C);
  CHECK(C[0] == doctest::Approx(0.6).epsilon(1e-15));
  CHECK(C[6] == doctest::Approx(60.0).epsilon(1e-15));
  const double ref = reference_mmd(q, p, n, Z);
  CHECK(mmd_ops<cpu>::imq_mmd(n, n, Z, q.data(), p.data(), C, 7) == doctest::Approx(ref).epsilon(1e-13));
  // Float data (double accumulation) agrees to float precision.
  std::vector<float> qf(q.begin(), q.end()), pf(p.begin(), p.end());
  CHECK(mmd_ops<cpu>::imq_mmd(n, n, Z, qf.data(), pf.data(), C, 7) == doctest::Approx(ref).epsilon(1e-5));
  // Symmetric in its two sets.
  CHECK(mmd_ops<cpu>::imq_mmd(n, n, Z, p.data(), q.data(), C, 7) == doctest::Approx(ref).epsilon(1e-13));

  // The regulariser draws the prior from ctx.rng: replay it and recompute L_reg.
  Config cfg = gradcheck::tiny_model_config();
  Arena<double> ar;
  MMDReg reg(ar, "regularizer", cfg);
  auto z = randn(n * Z, 3, 0.5, 1.2), kl = randn(n, 4, 3.0, 1.0);
  Context<> ctx(77);
  ctx.rng.position = 40;
  MMDReg::Cache cache;
  const double L = reg_value(reg, ctx, 5, {kl.data(), n, 1}, {z.data(), n, Z}, cache);
  CHECK(ctx.rng.position == 40 + Rng::blocks_for(n * Z));
  std::vector<double> prior(n * Z);
  Rng(77, 40).normal(prior.data(), prior.size());
  const double mmd = reference_mmd(z, prior, n, Z);
  double mean_kl = 0;
  for (double v : kl) mean_kl += v / n;
  CHECK(cache.weight == 0.5);
  CHECK(mmd_ops<cpu>::imq_mmd(n, n, Z, z.data(), cache.prior.data(), C, 7) == doctest::Approx(mmd).epsilon(1e-13));
  CHECK(L == doctest::Approx(10 * mmd + 0.5 * mean_kl).epsilon(1e-13));
  // forward accumulates into its output.
  ctx.rng.position = 40;
  CHECK(reg_value(reg, ctx, 5, {kl.data(), n, 1}, {z.data(), n, Z}, cache, 2.5) == doctest::Approx(2.5 + L).epsilon(1e-13));
  // Fresh prior samples every forward.
  const double L2 = reg_value(reg, ctx, 5, {kl.data(), n, 1}, {z.data(), n, Z}, cache);
  CHECK(L2 != L);
}

TEST_CASE("mmd: near zero and unbiased for prior samples, clearly positive for shifted or scaled ones") {
  // The paper's sizes: batch 32, latent 32. Null distribution measured from repeated draws.
  const int n = 32, Z = 32, R = 400;
  const Moments null = moments(mmd_draws(R, n, Z, 0, 1, 11));
  MESSAGE("null: mean " << null.mean << " sd " << null.sd << " se " << null.se);
  CHECK(null.sd > 0);
  // Unbiased: the mean over R draws is within 4 standard errors of 0.
  CHECK(std::abs(null.mean) < 4 * null.se);
  // Independent single draws lie within 5 standard deviations of 0.
  for (double v : mmd_draws(5, n, Z, 0, 1, 12)) CHECK(std::abs(v) < 5 * null.sd);
  // A mean shift of 1 per dimension, or a scale of 2, is far outside the null.
  for (double v : mmd_draws(5, n, Z, 1, 1, 13)) CHECK(v > 20 * null.sd);
  for (double v : mmd_draws(5, n, Z, 0, 2, 14)) CHECK(v > 20 * null.sd);
  MESSAGE("shift 1: " << moments(mmd_draws(5, n, Z, 1, 1, 13)).mean << ", scale 2: " << moments(mmd_draws(5, n, Z, 0, 2, 14)).mean);
  // A small shift (0.3) is detected on average: its mean is many standard errors above 0.
  const Moments small = moments(mmd_draws(100, n, Z, 0.3, 1, 15));
  CHECK(small.mean > 10 * small.se);

  // Small sets, where the bias of including i = j would be largest: still unbiased, and the
  // test has the power to see the V-statistic's bias.
  const int n2 = 4, Z2 = 2, R2 = 6000;
  const Moments u = moments(mmd_draws(R2, n2, Z2, 0, 1, 16));
  MESSAGE("n = 4: mean " << u.mean << " se " << u.se);
  CHECK(std::abs(u.mean) < 4 * u.se);
  const Moments v = moments(mmd_draws(R2, n2, Z2, 0, 1, 16, /*biased=*/true));
  CHECK(v.mean > 10 * v.se);
}

TEST_CASE("mmd: B = 1 defines MMD = 0 with no gradient and no division by zero") {
  Config cfg = gradcheck::tiny_model_config();
  Arena<double> ar;
  MMDReg reg(ar, "regularizer", cfg);
  std::vector<double> z = {0.3, -1.2}, kl = {2.0}, dz = {0.5, 0.25}, dkl = {1.0};
  Context<> ctx(5);
  MMDReg::Cache c;
  const double L = reg_value(reg, ctx, 5, {kl.data(), 1, 1}, {z.data(), 1, 2}, c);
  CHECK(L == doctest::Approx(0.5 * 2.0));
  reg.backward(ctx, {kl.data(), 1, 1}, {z.data(), 1, 2}, {dkl.data(), 1, 1}, {dz.data(), 1, 2}, c);
  CHECK(dz[0] == 0.5);
  CHECK(dz[1] == 0.25);
  CHECK(dkl[0] == doctest::Approx(1.5));
}

TEST_CASE("mmd: finite-difference gradient in z and kl (prior replayed), accumulating") {
  for (int n : {2, 6}) {
    CAPTURE(n);
    const int Z = 3;
    Config cfg = gradcheck::tiny_model_config();
    Arena<double> ar;
    MMDReg reg(ar, "regularizer", cfg);
    auto z = randn(n * Z, 21, 0.4, 0.8), kl = randn(n, 22, 2.0, 1.0);
    Context<> ctx(31);
    MMDReg::Cache c;
    auto loss = [&] {
      ctx.rng.position = 7;
      return reg_value(reg, ctx, 5, {kl.data(), n, 1}, {z.data(), n, Z}, c);
    };
    auto dz = randn(n * Z, 23), dkl = randn(n, 24);
    const auto dz0 = dz, dkl0 = dkl;
    loss();
    reg.backward(ctx, {kl.data(), n, 1}, {z.data(), n, Z}, {dkl.data(), n, 1}, {dz.data(), n, Z}, c);
    std::vector<gradcheck::Probe> probes{{"z", z.data(), dz}, {"kl", kl.data(), dkl}};
    for (size_t i = 0; i < dz.size(); ++i) probes[0].grad[i] -= dz0[i];
    for (size_t i = 0; i < dkl.size(); ++i) probes[1].grad[i] -= dkl0[i];
    for (double g : probes[1].grad) CHECK(g == doctest::Approx(0.5 / n));
    double norm = 0;
    for (double g : probes[0].grad) norm += g * g;
    CHECK(norm > 1e-4);  // the MMD gradient is not trivially zero
    gradcheck::Options o;
    o.per_tensor = 1000;  // every entry
    CHECK(gradcheck::check(probes, loss, o) == n * Z + n);
  }
}

TEST_CASE("mmd: the KL weight anneals like Regularizer<KL> up to the cap 0.8") {
  Config cfg = gradcheck::tiny_model_config();
  cfg.kl_start = 100;
  cfg.kl_anneal_steps = 1000;
  Arena<double> ar;
  MMDReg reg(ar, "regularizer", cfg);
  Regularizer<KL>::module<double, cpu> kl_reg(ar, "kl", cfg);
  const int n = 3, Z = 2;
  auto z = randn(n * Z, 41), kl = randn(n, 42, 1.0, 0.1);
  double mean_kl = 0;
  for (double v : kl) mean_kl += v / n;
  Context<> ctx(1);
  for (long step : {1L, 100L, 350L, 600L, 899L, 900L, 950L, 1100L, 1000000L}) {
    CAPTURE(step);
    MMDReg::Cache c;
    Regularizer<KL>::module<double, cpu>::Cache ck;
    const double L = reg_value(reg, ctx, step, {kl.data(), n, 1}, {z.data(), n, Z}, c);
    const double Lk = reg_value(kl_reg, ctx, step, {kl.data(), n, 1}, {z.data(), n, Z}, ck);
    CHECK(Lk == doctest::Approx(ck.weight * mean_kl).epsilon(1e-12));
    const double ramp = std::clamp((step - 100) / 1000.0, 0.0, 1.0);
    CHECK(ck.weight == doctest::Approx(ramp).epsilon(1e-12));
    CHECK(c.weight == doctest::Approx(std::min(ramp, 0.8)).epsilon(1e-12));
    CHECK(c.weight <= 0.8);
    double C[7];
    Regularizer<MMD>::kernel_constants(Z, C);
    const double mmd = mmd_ops<cpu>::imq_mmd(n, n, Z, z.data(), c.prior.data(), C, 7);
    CHECK(L == doctest::Approx(10 * mmd + c.weight * mean_kl).epsilon(1e-12));
  }
  CHECK(Regularizer<MMD>::weight(cfg, 950) == 0.8);
  CHECK(Regularizer<MMD>::weight(cfg, 1000000) == 0.8);
  CHECK(Regularizer<MMD>::weight(cfg, 850) == doctest::Approx(0.75));
}

TEST_CASE("zero regularizer: L_reg = 0, weight 0, no gradient, no noise") {
  Config cfg = gradcheck::tiny_model_config();
  Arena<double> ar;
  Regularizer<Zero>::module<double, cpu> reg(ar, "regularizer", cfg);
  std::vector<double> z = {1, 2, 3, 4}, kl = {5, 6}, dz = {0.1, 0.2, 0.3, 0.4}, dkl = {0.5, 0.6};
  Context<> ctx(3);
  Regularizer<Zero>::module<double, cpu>::Cache c;
  c.weight = 7;
  CHECK(reg_value(reg, ctx, 100000, {kl.data(), 2, 1}, {z.data(), 2, 2}, c) == 0);
  CHECK(c.weight == 0);
  CHECK(ctx.rng.position == 0);
  reg.backward(ctx, {kl.data(), 2, 1}, {z.data(), 2, 2}, {dkl.data(), 2, 1}, {dz.data(), 2, 2}, c);
  CHECK(dz == std::vector<double>{0.1, 0.2, 0.3, 0.4});
  CHECK(dkl == std::vector<double>{0.5, 0.6});
  CHECK(std::string(Regularizer<Zero>::name) == "zero");
  CHECK(std::string(Regularizer<MMD>::name) == "mmd");
}

TEST_CASE("deterministic posterior: z = W e + b, zero kl, no noise, gradients of both paths") {
  for (bool det_only : {false, true}) {
    CAPTURE(det_only);
    Arena<double> ar;
    const int n = 4, in = 5, Z = 3;
    Posterior<Deterministic>::module<double, cpu> post(ar, "posterior", in, Z, det_only);
    ar.finalize();
    ar.initialise(3);
    REQUIRE(ar.infos().size() == 2);
    CHECK(ar.infos()[0].name == "posterior.mu.weight");
    CHECK(ar.infos()[1].name == "posterior.mu.bias");
    CHECK(ar.infos()[0].shape == std::vector<int>{Z, in});
    // PyTorch's default bound 1/sqrt(in).
    ar.visit([&](const ParamInfo&, double* v, double*) {
      for (int k = 0; k < 3; ++k) CHECK(std::abs(v[k]) <= 1 / std::sqrt(double(in)));
    });
    auto e = randn(n * in, 4);
    Context<> ctx(9);
    Posterior<Deterministic>::module<double, cpu>::Cache c, cm;
    post.sample(ctx, ar, {e.data(), n, in}, c);
    CHECK(ctx.rng.position == 0);
    const double* W = ar.value(post.mu.W);
    const double* b = ar.value(post.mu.b);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < Z; ++k) {
        double ref = b[k];
        for (int j = 0; j < in; ++j) ref += W[k * in + j] * e[i * in + j];
        CHECK(c.z.data()[i * Z + k] == doctest::Approx(ref).epsilon(1e-14));
      }
    for (int i = 0; i < n; ++i) {
      CHECK(c.kl.data()[i] == 0);
      CHECK(c.logq.data()[i] == 0);
      CHECK(c.logp.data()[i] == 0);
    }
    post.mean(ctx, ar, {e.data(), n, in}, cm);
    for (int i = 0; i < n * Z; ++i) CHECK(cm.z.data()[i] == c.z.data()[i]);

    const auto wz = randn(n * Z, 5);
    for (bool mean_path : {false, true}) {
      CAPTURE(mean_path);
      auto loss = [&] {
        if (mean_path)
          post.mean(ctx, ar, {e.data(), n, in}, c);
        else
          post.sample(ctx, ar, {e.data(), n, in}, c);
        double s = 0;
        for (int i = 0; i < n * Z; ++i) s += wz[i] * c.z.data()[i];
        return s;
      };
      auto de = randn(n * in, 6);
      const auto de0 = de;
      std::vector<double> dkl = {1, 2, 3, 4};
      auto probes = gradcheck::arena_probes(ar, [&] {
        loss();
        std::vector<double> dz = wz;
        if (mean_path)
          post.mean_backward(ctx, ar, {e.data(), n, in}, {dz.data(), n, Z}, {de.data(), n, in}, c);
        else
          post.sample_backward(ctx, ar, {e.data(), n, in}, {dz.data(), n, Z}, {dkl.data(), n, 1},
                               {de.data(), n, in}, c);
      });
      gradcheck::Probe pe{"e", e.data(), de};
      for (size_t i = 0; i < de.size(); ++i) pe.grad[i] -= de0[i];
      probes.push_back(pe);
      gradcheck::Options o;
      o.per_tensor = 1000;  // every entry
      CHECK(gradcheck::check(probes, loss, o) == Z * in + Z + n * in);
    }
  }
}

TEST_CASE("WAE Model<Gaussian, MMD, GRU>: whole-model gradient check (double, dropout on, KL weight 0.5)") {
  Config c = gradcheck::tiny_model_config();
  WAEd model(c, 7);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> ctx(123, true);
  const Losses l = model.forward(ctx, b, 5);
  CHECK(l.kl_weight == doctest::Approx(0.5));
  CHECK(model.forward(ctx, b, 1000000).kl_weight == doctest::Approx(0.8));
  gradcheck::check_model_gradients(model, b, 5);
}

TEST_CASE("WAE Coupled<Model<Gaussian, MMD, GRU>>: whole-model gradient check") {
  Config c = gradcheck::tiny_model_config();
  c.lambda_c = 2.5;
  CWAEd model(c, 8);
  gradcheck::check_model_gradients(model, gradcheck::tiny_model_batch(c.vocab_size), 5);
}

TEST_CASE("WAE: L_reg = 10 MMD(z, prior) + lambda mean KL, recomputed from the model's z and replayed prior") {
  Config c = gradcheck::tiny_model_config();
  WAEd model(c, 9);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  const int nb = b.size(), Z = c.latent;
  for (long step : {5L, 9L, 1000000L}) {
    CAPTURE(step);
    Context<> ctx(17, false);  // evaluation: the prior samples are the forward's last draw
    const Losses l = model.forward(ctx, b, step);
    std::vector<double> z(model.code().data, model.code().data + nb * Z), prior(nb * Z);
    Rng(17, ctx.rng.position - Rng::blocks_for(prior.size())).normal(prior.data(), prior.size());
    const double mmd = reference_mmd(z, prior, nb, Z);
    CHECK(l.kl_weight == doctest::Approx(std::min(step / 10.0, 0.8)));
    CHECK(l.reg == doctest::Approx(10 * mmd + l.kl_weight * l.kl).epsilon(1e-12));
    CHECK(l.loss == doctest::Approx(l.rec + l.reg).epsilon(1e-12));
  }
}

TEST_CASE("DAE Model<Deterministic, Zero, GRU>: loss = rec, z = W e + b, and whole-model gradient check") {
  Config c = gradcheck::tiny_model_config();
  DAEd model(c, 10);
  CHECK(DAEd::structure() == "deterministic-zero-gru");
  for (const auto& info : model.arena().infos()) CHECK(info.name.find("log_sigma") == std::string::npos);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  const int nb = b.size(), Z = c.latent;
  {
    Context<> ctx(4, false);
    const Losses l = model.forward(ctx, b, 5);
    CHECK(ctx.rng.position == 0);  // evaluation: a DAE draws no noise at all
    CHECK(l.loss == l.rec);
    CHECK(l.reg == 0);
    CHECK(l.kl == 0);
    CHECK(l.kl_weight == 0);
    CHECK(l.rec > 0);
    // z is the linear head on e: recompute it through the public parts.
    std::vector<double> zr(nb * Z);
    model.post.mu.forward(ctx, model.arena(), model.encoded(), View<double>{zr.data(), nb, Z});
    for (int i = 0; i < nb * Z; ++i) CHECK(model.code().data[i] == doctest::Approx(zr[i]).epsilon(1e-14));
    // A later step changes nothing: no annealing.
    CHECK(model.forward(ctx, b, 1000000).loss == l.loss);
    // The importance-sampling terms carry no density ratio.
    const ImportanceTerms it = model.importance_weights(ctx, b, 2);
    for (size_t k = 0; k < it.log_ratio.size(); ++k) CHECK(it.log_ratio[k] == 0);
  }
  {
    Context<> ctx(4, true);  // training: the loss is still exactly rec
    const Losses l = model.forward(ctx, b, 5);
    CHECK(l.loss == l.rec);
  }
  gradcheck::check_model_gradients(model, b, 5);
}

TEST_CASE("WAE, Coupled WAE and DAE in float: one training step runs with finite loss and gradients") {
  Config c = gradcheck::tiny_model_config();
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  auto run = [&](auto& model) {
    Context<> ctx(2, true);
    model.zero_grad();
    const Losses l = model.forward(ctx, b, 5);
    model.backward(ctx);
    CHECK(std::isfinite(l.loss));
    const auto& g = model.arena().grads();
    CHECK(ops<cpu>::all_finite(g.data(), g.size()));
    CHECK(ops<cpu>::sum_squares(g.data(), g.size()) > 0);
  };
  Model<Posterior<Gaussian>, Regularizer<MMD>, Decoder<GRU>> wae(c, 1);
  Coupled<Model<Posterior<Gaussian>, Regularizer<MMD>, Decoder<GRU>>> cwae(c, 2);
  Model<Posterior<Deterministic>, Regularizer<Zero>, Decoder<GRU>> dae(c, 3);
  run(wae);
  run(cwae);
  run(dae);
}
