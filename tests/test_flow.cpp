// Posterior<Flow<K>>: planar flows and the BN-Gaussian base (reference.md §3, §7 VAE-NF, §8).
// Values are checked against a reference written here from the equations (not through the
// kernels), log-determinants against log|det J| of a numerically differentiated Jacobian
// (LU determinant), gradients against central differences (pre-filled gradient buffers, so
// a backward that overwrites instead of accumulating fails), and whole Model / Coupled<Model>
// gradients at tiny sizes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>  // before Eigen/Dense: it includes Eigen by core/eigen.hpp
#include <couplevae/posterior/flow.hpp>

#include <Eigen/Dense>

#include "gradcheck.hpp"

using namespace couplevae;
using gradcheck::randn;
using gradcheck::dot;
using gradcheck::param;
using A = Arena<double>;
using FlowPost = Posterior<Flow<3>>::module<double, cpu>;

namespace {
constexpr double half_log_2pi = 0.91893853320467274178;


// --- Reference planar flow, straight from the equations --------------------------------
struct RefFlow {
  std::vector<double> u, w;
  double b;
  std::vector<double> uhat() const {
    const int Z = int(u.size());
    double wu = 0, ww = 0;
    for (int k = 0; k < Z; ++k) wu += w[k] * u[k], ww += w[k] * w[k];
    const double m = -1 + std::log(1 + std::exp(wu));
    std::vector<double> r(Z);
    for (int k = 0; k < Z; ++k) r[k] = u[k] + (m - wu) * w[k] / ww;
    return r;
  }
  // z <- f(z); returns log(|1 + psi.u_hat| + 1e-8).
  double apply(std::vector<double>& z) const {
    const auto uh = uhat();
    double a = b;
    for (size_t k = 0; k < z.size(); ++k) a += w[k] * z[k];
    const double t = std::tanh(a);
    double psi_u = 0;
    for (size_t k = 0; k < z.size(); ++k) psi_u += (1 - t * t) * w[k] * uh[k];
    for (size_t k = 0; k < z.size(); ++k) z[k] += uh[k] * t;
    return std::log(std::abs(1 + psi_u) + 1e-8);
  }
};

std::vector<RefFlow> read_flows(A& ar, const std::string& prefix, int K, int Z) {
  std::vector<RefFlow> f;
  for (int k = 0; k < K; ++k) {
    const std::string p = prefix + "." + std::to_string(k);
    const double *u = param(ar, p + ".u"), *w = param(ar, p + ".w");
    f.push_back({{u, u + Z}, {w, w + Z}, param(ar, p + ".b")[0]});
  }
  return f;
}

// Flow parameters of a magnitude that matters (the U(-0.01, 0.01) initialisation makes
// every flow nearly the identity), with flow 1's w.u = -3 so the u_hat correction is active.
void strong_flows(A& ar, const std::string& prefix, int K, int Z, uint64_t seed) {
  for (int k = 0; k < K; ++k) {
    const std::string p = prefix + "." + std::to_string(k);
    auto u = randn(Z, seed + 3 * k, 0.9), w = randn(Z, seed + 3 * k + 1, 0.9);
    std::copy(u.begin(), u.end(), param(ar, p + ".u"));
    std::copy(w.begin(), w.end(), param(ar, p + ".w"));
    param(ar, p + ".b")[0] = 0.3 * (k - 1);
  }
  double* u = param(ar, prefix + ".1.u");
  const double* w = param(ar, prefix + ".1.w");
  double ww = 0;
  for (int k = 0; k < Z; ++k) ww += w[k] * w[k];
  for (int k = 0; k < Z; ++k) u[k] = -3 * w[k] / ww + 0.2 * (k % 2 ? 1 : -1) * w[(k + 1) % Z];
}
double w_dot_u(A& ar, const std::string& p, int Z) {
  const double *u = param(ar, p + ".u"), *w = param(ar, p + ".w");
  double s = 0;
  for (int k = 0; k < Z; ++k) s += u[k] * w[k];
  return s;
}

// Reference head: BN(W e + b) with batch statistics (training) or the given running ones.
std::vector<double> ref_head(A& ar, const std::string& lin, const std::string& bn, const std::vector<double>& e,
                             int n, int in, int Z, bool training) {
  const double *W = param(ar, lin + ".weight"), *bias = param(ar, lin + ".bias");
  const double *g = param(ar, bn + ".weight"), *beta = param(ar, bn + ".bias");
  const double *rm = param(ar, bn + ".running_mean"), *rv = param(ar, bn + ".running_var");
  std::vector<double> y(size_t(n) * Z);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < Z; ++j) {
      double s = bias[j];
      for (int k = 0; k < in; ++k) s += W[j * in + k] * e[i * in + k];
      y[i * Z + j] = s;
    }
  for (int j = 0; j < Z; ++j) {
    double mean = rm[j], var = rv[j];
    if (training) {
      mean = 0, var = 0;
      for (int i = 0; i < n; ++i) mean += y[i * Z + j];
      mean /= n;
      for (int i = 0; i < n; ++i) var += (y[i * Z + j] - mean) * (y[i * Z + j] - mean);
      var /= n;
    }
    for (int i = 0; i < n; ++i) y[i * Z + j] = g[j] * (y[i * Z + j] - mean) / std::sqrt(var + 1e-5) + beta[j];
  }
  return y;
}

// Non-trivial BatchNorm affine parameters.
void shake_bn(A& ar, const std::string& bn, int Z, uint64_t seed) {
  auto g = randn(Z, seed, 0.3), b = randn(Z, seed + 1, 0.3);
  for (int j = 0; j < Z; ++j) param(ar, bn + ".weight")[j] = 1 + g[j], param(ar, bn + ".bias")[j] = b[j];
}
}  // namespace

TEST_CASE("planar u_hat: w.u_hat = m(w.u) >= -1 for random u, w (invertibility constraint)") {
  Rng rng(17);
  int active = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int Z = 1 + trial % 7;
    const double scale = std::pow(10.0, double(trial % 5) - 2);  // 0.01 .. 100
    std::vector<double> u(Z), w(Z), uh(Z);
    rng.normal(u.data(), Z);
    rng.normal(w.data(), Z);
    for (int k = 0; k < Z; ++k) u[k] *= scale;
    flow_ops<cpu>::planar_uhat(Z, u.data(), w.data(), uh.data());
    double wu = 0, wuh = 0;
    for (int k = 0; k < Z; ++k) wu += w[k] * u[k], wuh += w[k] * uh[k];
    active += wu < -1;
    // w.u_hat = m(w.u) > -1 exactly; in floating point up to the rounding of w.u + r ||w||^2.
    CHECK(wuh >= -1.0 - 1e-13 * (1 + std::abs(wu)));
    if (wu > -20) CHECK(wuh > -1.0);
    const double m = -1 + (wu > 30 ? wu : std::log(1 + std::exp(wu)));
    CHECK(wuh == doctest::Approx(m).epsilon(1e-9).scale(1.0));
    // u_hat - u is parallel to w.
    const double r = (m - wu);
    double ww = 0;
    for (int k = 0; k < Z; ++k) ww += w[k] * w[k];
    for (int k = 0; k < Z; ++k) CHECK(uh[k] - u[k] == doctest::Approx(r * w[k] / ww).epsilon(1e-9).scale(1.0));
  }
  CHECK(active > 200);  // the constraint was exercised
}

TEST_CASE("planar flows: forward equals the reference, logdet equals log|det J| of the numerical Jacobian") {
  const int Z = 4, K = 3, n = 7;
  A ar;
  PlanarFlows<double, cpu> fl(ar, "flows", Z, K);
  ar.finalize();
  ar.initialise(3);
  // The initialisation is U(-0.01, 0.01).
  for (const char* s : {"flows.0.u", "flows.2.w", "flows.1.b"}) {
    const double* v = param(ar, s);
    CHECK(std::abs(v[0]) <= 0.01);
    CHECK(v[0] != 0.0);
  }
  strong_flows(ar, "flows", K, Z, 50);
  CHECK(w_dot_u(ar, "flows.1", Z) < -1);
  const auto ref = read_flows(ar, "flows", K, Z);
  Context<> ctx(1);
  auto z0 = randn(size_t(n) * Z, 8, 1.5);
  for (int k = 0; k < Z; ++k) z0[k] = 0;  // row 0 at the origin, row 1 far out
  for (int k = 0; k < Z; ++k) z0[Z + k] *= 4;
  std::vector<double> zK(n * Z), ld(n);
  PlanarFlows<double, cpu>::Cache c;
  fl.forward(ctx, ar, {z0.data(), n, Z}, {zK.data(), n, Z}, {ld.data(), n, 1}, c);
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    std::vector<double> z(z0.begin() + i * Z, z0.begin() + (i + 1) * Z);
    double lsum = 0;
    for (const auto& f : ref) lsum += f.apply(z);
    for (int k = 0; k < Z; ++k) CHECK(zK[i * Z + k] == doctest::Approx(z[k]).epsilon(1e-12));
    CHECK(ld[i] == doctest::Approx(lsum).epsilon(1e-12));
    // Jacobian of the module's own map z0 -> zK by central differences, determinant by LU.
    Eigen::MatrixXd J(Z, Z);
    const double h = 1e-5;
    for (int j = 0; j < Z; ++j) {
      std::vector<double> zp(z0.begin() + i * Z, z0.begin() + (i + 1) * Z), zm = zp, op(Z), om(Z);
      zp[j] += h;
      zm[j] -= h;
      double l1, l2;
      PlanarFlows<double, cpu>::Cache c1;
      fl.forward(ctx, ar, {zp.data(), 1, Z}, {op.data(), 1, Z}, {&l1, 1, 1}, c1);
      fl.forward(ctx, ar, {zm.data(), 1, Z}, {om.data(), 1, Z}, {&l2, 1, 1}, c1);
      for (int r = 0; r < Z; ++r) J(r, j) = (op[r] - om[r]) / (2 * h);
    }
    const double det = Eigen::PartialPivLU<Eigen::MatrixXd>(J).determinant();
    CHECK(det > 0);  // invertible, orientation-preserving (w.u_hat >= -1)
    CHECK(ld[i] == doctest::Approx(std::log(std::abs(det))).epsilon(1e-7).scale(1.0));
  }
}

TEST_CASE("planar flows: gradients through u_hat (constraint active), logdet and the input, accumulate") {
  const int Z = 3, K = 3, n = 5;
  A ar;
  PlanarFlows<double, cpu> fl(ar, "f", Z, K);
  ar.finalize();
  ar.initialise(4);
  strong_flows(ar, "f", K, Z, 70);
  CHECK(w_dot_u(ar, "f.1", Z) < -1);
  Context<> ctx(1);
  auto z0 = randn(size_t(n) * Z, 9, 1.2), wz = randn(size_t(n) * Z, 10), wl = randn(n, 11);
  std::vector<double> zK(n * Z), ld(n);
  PlanarFlows<double, cpu>::Cache c;
  auto loss = [&] {
    fl.forward(ctx, ar, {z0.data(), n, Z}, {zK.data(), n, Z}, {ld.data(), n, 1}, c);
    return dot(zK.data(), wz) + dot(ld.data(), wl);
  };
  const auto pre = randn(z0.size(), 12);
  std::vector<double> dz0;
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    dz0 = pre;
    fl.backward(ctx, ar, {wz.data(), n, Z}, {wl.data(), n, 1}, {dz0.data(), n, Z}, c);
    for (size_t i = 0; i < dz0.size(); ++i) dz0[i] -= pre[i];
  });
  probes.push_back({"z0", z0.data(), dz0});
  CHECK(gradcheck::check(probes, loss, {40}) > 30);

  // logdet alone (no dzK): the null view means zero.
  auto loss2 = [&] {
    fl.forward(ctx, ar, {z0.data(), n, Z}, {zK.data(), n, Z}, {ld.data(), n, 1}, c);
    return dot(ld.data(), wl);
  };
  auto probes2 = gradcheck::arena_probes(ar, [&] {
    loss2();
    dz0.assign(z0.size(), 0.0);
    fl.backward(ctx, ar, View<double>{}, {wl.data(), n, 1}, {dz0.data(), n, Z}, c);
  });
  probes2.push_back({"z0", z0.data(), dz0});
  CHECK(gradcheck::check(probes2, loss2, {40}) > 30);
}

namespace {
struct PostFixture {
  static constexpr int in = 5, Z = 3, n = 6;
  A ar;
  FlowPost post;
  std::vector<double> e;
  explicit PostFixture(bool deterministic) {
    post = FlowPost(ar, "posterior", in, Z, deterministic);
    ar.finalize();
    ar.initialise(21);
    strong_flows(ar, "posterior.flows", 3, Z, 90);
    shake_bn(ar, "posterior.mu_bn", Z, 30);
    if (!deterministic) shake_bn(ar, "posterior.log_sigma_bn", Z, 32);
    e = randn(size_t(n) * in, 22);
  }
  View<double> ev() { return {e.data(), n, in}; }
};
}  // namespace

TEST_CASE("Posterior<Flow<3>>::sample: z, z0, kl, logq, logp against an independent computation") {
  PostFixture f(false);
  const int n = f.n, Z = f.Z, in = f.in;
  CHECK(std::string(Posterior<Flow<3>>::name) == "flow3");
  CHECK(std::string(Posterior<Flow<12>>::name) == "flow12");
  for (const char* s : {"posterior.mu.weight", "posterior.mu_bn.running_var", "posterior.log_sigma.bias",
                        "posterior.log_sigma_bn.weight", "posterior.flows.2.b"})
    CHECK_MESSAGE(gradcheck::find_param(f.ar, s) != nullptr, s);
  Context<> ctx(77, true);
  ctx.rng.position = 40;
  FlowPost::Cache c;
  f.post.sample(ctx, f.ar, f.ev(), c);
  CHECK(ctx.rng.position > 40);
  // Reference, from the parameters and a replay of the noise.
  const auto mu = ref_head(f.ar, "posterior.mu", "posterior.mu_bn", f.e, n, in, Z, true);
  const auto ls = ref_head(f.ar, "posterior.log_sigma", "posterior.log_sigma_bn", f.e, n, in, Z, true);
  std::vector<double> eps(n * Z);
  Rng(77, 40).normal(eps.data(), eps.size());
  const auto flows = read_flows(f.ar, "posterior.flows", 3, Z);
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    std::vector<double> z(Z);
    double logq0 = 0, logp = 0, lsum = 0;
    for (int k = 0; k < Z; ++k) {
      const double s = std::exp(ls[i * Z + k]);
      z[k] = mu[i * Z + k] + s * eps[i * Z + k];
      CHECK(c.z0.data()[i * Z + k] == doctest::Approx(z[k]).epsilon(1e-12));
      const double r = (z[k] - mu[i * Z + k]) / s;
      logq0 += -0.5 * r * r - std::log(s) - half_log_2pi;
    }
    for (const auto& fl : flows) lsum += fl.apply(z);
    for (int k = 0; k < Z; ++k) {
      CHECK(c.z.data()[i * Z + k] == doctest::Approx(z[k]).epsilon(1e-12));
      logp += -0.5 * z[k] * z[k] - half_log_2pi;
    }
    CHECK(c.logdet.data()[i] == doctest::Approx(lsum).epsilon(1e-12));
    CHECK(c.logq.data()[i] == doctest::Approx(logq0 - lsum).epsilon(1e-10));
    CHECK(c.logp.data()[i] == doctest::Approx(logp).epsilon(1e-12));
    CHECK(c.kl.data()[i] == doctest::Approx(logq0 - lsum - logp).epsilon(1e-10));
  }
  // Training-mode BN: each column of mu0 has batch mean beta.
  for (int k = 0; k < Z; ++k) {
    double m = 0;
    for (int i = 0; i < n; ++i) m += c.mu.data()[i * Z + k];
    CHECK(m / n == doctest::Approx(param(f.ar, "posterior.mu_bn.bias")[k]).epsilon(1e-12));
  }
}

TEST_CASE("Posterior<Flow<3>>::sample_backward: gradients (training mode, BN batch statistics, eval mode)") {
  for (bool training : {true, false}) {
    CAPTURE(training);
    PostFixture f(false);
    const int n = f.n, Z = f.Z, in = f.in;
    Context<> ctx(5, true);
    FlowPost::Cache c;
    f.post.sample(ctx, f.ar, f.ev(), c);  // moves the running statistics off (0, 1)
    ctx.training = training;
    auto wz = randn(size_t(n) * Z, 31), wk = randn(n, 32);
    auto loss = [&] {
      ctx.rng.position = 0;
      f.post.sample(ctx, f.ar, f.ev(), c);
      return dot(c.z.data(), wz) + dot(c.kl.data(), wk);
    };
    const auto pre = randn(f.e.size(), 33);
    std::vector<double> de;
    auto probes = gradcheck::arena_probes(f.ar, [&] {
      loss();
      de = pre;
      f.post.sample_backward(ctx, f.ar, f.ev(), {wz.data(), n, Z}, {wk.data(), n, 1}, {de.data(), n, in}, c);
      for (size_t i = 0; i < de.size(); ++i) de[i] -= pre[i];
    });
    probes.push_back({"e", f.e.data(), de});
    CHECK(gradcheck::check(probes, loss, {20}) >= 90);
  }
}

TEST_CASE("Posterior<Flow<3>>::sample_backward: kl alone (null dz view), e.g. the regulariser's own term") {
  PostFixture f(false);
  const int n = f.n, in = f.in;
  Context<> ctx(6, true);
  FlowPost::Cache c;
  auto wk = randn(n, 34);
  auto loss = [&] {
    ctx.rng.position = 0;
    f.post.sample(ctx, f.ar, f.ev(), c);
    return dot(c.kl.data(), wk);
  };
  std::vector<double> de;
  auto probes = gradcheck::arena_probes(f.ar, [&] {
    loss();
    de.assign(f.e.size(), 0.0);
    f.post.sample_backward(ctx, f.ar, f.ev(), View<double>{}, {wk.data(), n, 1}, {de.data(), n, in}, c);
  });
  probes.push_back({"e", f.e.data(), de});
  CHECK(gradcheck::check(probes, loss, {12}) > 60);
}

TEST_CASE("Posterior<Flow<3>> deterministic: mean() = flows(BN(mu head)), own parameters only, gradients") {
  PostFixture f(true);
  const int n = f.n, Z = f.Z, in = f.in;
  CHECK((gradcheck::find_param(f.ar, "posterior.mu_bn.weight") != nullptr));
  CHECK((gradcheck::find_param(f.ar, "posterior.flows.0.u") != nullptr));
  CHECK_FALSE((gradcheck::find_param(f.ar, "posterior.log_sigma.weight") != nullptr));
  CHECK_FALSE((gradcheck::find_param(f.ar, "posterior.log_sigma_bn.weight") != nullptr));
  Context<> ctx(8, true);
  FlowPost::Cache c;
  const uint64_t pos = ctx.rng.position;
  f.post.mean(ctx, f.ar, f.ev(), c);
  CHECK(ctx.rng.position == pos);  // no noise drawn
  const auto mu = ref_head(f.ar, "posterior.mu", "posterior.mu_bn", f.e, n, in, Z, true);
  const auto flows = read_flows(f.ar, "posterior.flows", 3, Z);
  for (int i = 0; i < n; ++i) {
    std::vector<double> z(mu.begin() + i * Z, mu.begin() + (i + 1) * Z);
    for (const auto& fl : flows) fl.apply(z);
    for (int k = 0; k < Z; ++k) CHECK(c.z.data()[i * Z + k] == doctest::Approx(z[k]).epsilon(1e-12));
  }
  auto wz = randn(size_t(n) * Z, 41);
  auto loss = [&] {
    f.post.mean(ctx, f.ar, f.ev(), c);
    return dot(c.z.data(), wz);
  };
  const auto pre = randn(f.e.size(), 42);
  std::vector<double> de;
  auto probes = gradcheck::arena_probes(f.ar, [&] {
    loss();
    de = pre;
    f.post.mean_backward(ctx, f.ar, f.ev(), {wz.data(), n, Z}, {de.data(), n, in}, c);
    for (size_t i = 0; i < de.size(); ++i) de[i] -= pre[i];
  });
  probes.push_back({"e", f.e.data(), de});
  CHECK(gradcheck::check(probes, loss, {20}) >= 66);
}

TEST_CASE("Posterior<Flow<3>>: evaluation mode uses the BN running statistics") {
  PostFixture f(false);
  const int n = f.n, Z = f.Z, in = f.in;
  Context<> ctx(9, true);
  FlowPost::Cache c;
  for (int s = 0; s < 3; ++s) f.post.sample(ctx, f.ar, f.ev(), c);
  // Running mean after 3 identical batches: (1 - 0.9^3) * batch mean of the pre-BN head.
  {
    const double *W = param(f.ar, "posterior.mu.weight"), *b = param(f.ar, "posterior.mu.bias");
    double bm = 0;
    for (int i = 0; i < n; ++i) {
      double s = b[0];
      for (int k = 0; k < in; ++k) s += W[k] * f.e[i * in + k];
      bm += s / n;
    }
    CHECK(param(f.ar, "posterior.mu_bn.running_mean")[0] == doctest::Approx((1 - 0.729) * bm).epsilon(1e-12));
  }
  ctx.training = false;
  const std::vector<double> rm(param(f.ar, "posterior.mu_bn.running_mean"),
                               param(f.ar, "posterior.mu_bn.running_mean") + Z);
  f.post.sample(ctx, f.ar, f.ev(), c);
  // Evaluation leaves the running statistics alone and normalises with them.
  for (int k = 0; k < Z; ++k) CHECK(param(f.ar, "posterior.mu_bn.running_mean")[k] == rm[k]);
  const auto mu = ref_head(f.ar, "posterior.mu", "posterior.mu_bn", f.e, n, in, Z, false);
  const auto ls = ref_head(f.ar, "posterior.log_sigma", "posterior.log_sigma_bn", f.e, n, in, Z, false);
  const auto mu_batch = ref_head(f.ar, "posterior.mu", "posterior.mu_bn", f.e, n, in, Z, true);
  double differs = 0;
  for (int i = 0; i < n * Z; ++i) {
    CHECK(c.mu.data()[i] == doctest::Approx(mu[i]).epsilon(1e-12));
    CHECK(c.ls.data()[i] == doctest::Approx(ls[i]).epsilon(1e-12));
    differs = std::max(differs, std::abs(mu[i] - mu_batch[i]));
  }
  CHECK(differs > 1e-3);  // the test tells batch from running statistics
  // Each row's code is independent of the rest of the batch: a 2-row batch gives the same
  // deterministic codes for those rows.
  FlowPost::Cache full, part;
  f.post.mean(ctx, f.ar, f.ev(), full);
  f.post.mean(ctx, f.ar, View<double>{f.e.data() + 2 * in, 2, in}, part);
  for (int k = 0; k < 2 * Z; ++k) CHECK(part.z.data()[k] == doctest::Approx(full.z.data()[2 * Z + k]).epsilon(1e-13));
}

namespace {
using NFd = Model<Posterior<Flow<3>>, Regularizer<KL>, Decoder<GRU>, cpu, double>;
using CNFd = Coupled<NFd>;

// Flows of every posterior in the arena scaled up from their near-identity initialisation.
void strengthen_all_flows(A& ar, uint64_t seed) {
  Rng rng(seed);
  ar.visit([&](const ParamInfo& info, double* v, double*) {
    if (info.name.find(".flows.") == std::string::npos) return;
    rng.normal(v, info.size);
    for (size_t k = 0; k < info.size; ++k) v[k] *= 0.8;
  });
}

}  // namespace

TEST_CASE("Model<Flow<3>, KL, GRU>: whole-model gradient check (double, dropout on, KL weight 0.5)") {
  Config c = gradcheck::tiny_model_config();
  NFd model(c, 7);
  CHECK(NFd::structure() == "flow3-kl-gru");
  strengthen_all_flows(model.arena(), 1);
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> ctx(123, true);
  const Losses l = model.forward(ctx, b, 5);
  CHECK(l.kl_weight == doctest::Approx(0.5));
  CHECK(l.reg == doctest::Approx(0.5 * l.kl).epsilon(1e-12));
  CHECK(std::isfinite(l.kl));
  gradcheck::check_model_gradients(model, b, 5);
}

TEST_CASE("Coupled<Model<Flow<3>, KL, GRU>>: whole-model gradient check") {
  Config c = gradcheck::tiny_model_config();
  c.lambda_c = 2.5;
  CNFd model(c, 8);
  CHECK(CNFd::structure() == "coupled-flow3-kl-gru");
  CHECK((gradcheck::find_param(model.arena(), "couple.posterior.flows.2.w") != nullptr));
  CHECK_FALSE((gradcheck::find_param(model.arena(), "couple.posterior.log_sigma.weight") != nullptr));
  strengthen_all_flows(model.arena(), 2);
  gradcheck::check_model_gradients(model, gradcheck::tiny_model_batch(c.vocab_size), 5);
}
