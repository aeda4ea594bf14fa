// Tests of Posterior<VMF> and the scaled Bessel functions (reference.md §3 "vMF", "vMF
// density and KL", §16 items 7-9):
//   - log ive and the ratio A against independent references: the power series summed in
//     long double with rescaling, quadrature of the integral representation, closed forms
//     for half-integer orders, and high-precision values (40-50 digits, two methods);
//     Amos' bounds and finiteness over a dense sweep;
//   - the proposal's Gamma(alpha) and Beta(alpha, alpha) samplers against their exact CDFs
//     (Kolmogorov-Smirnov; the vMF moments alone cannot see a Gamma sampler that never rejects);
//   - the sampler: mean resultant length against A_m(kappa), mean direction, unit norm,
//     replay, per-row independence; the authors' blended b against the distribution it
//     really samples (computed by quadrature);
//   - the KL against quadrature of its defining integral (no Bessel function) and against
//     its Monte Carlo estimate;
//   - finite-difference gradients of sample (dz and dkl) and mean, and of whole models
//     Model<Posterior<VMF>, Regularizer<KL>, Decoder<GRU>> and Coupled<...> in double.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include <couplevae/backend/cpu/ops.hpp>
#include <couplevae/config.hpp>
#include <couplevae/core/batch.hpp>
#include <couplevae/decoder/gru.hpp>
#include <couplevae/model/coupled.hpp>
#include <couplevae/model/model.hpp>
#include <couplevae/posterior/bessel.hpp>
#include <couplevae/posterior/vmf.hpp>
#include <couplevae/regularizer/kl.hpp>

#include "gradcheck.hpp"
#include "stats.hpp"

using namespace couplevae;
using gradcheck::randn;
using gradcheck::dot;

namespace {

using ld = long double;
const ld pi_l = 3.141592653589793238462643383279502884L;

// ---------------------------------------------------------------------------------------
// Independent references for log ive.

// log(I_nu(x) e^{-x}) from the power series I_nu(x) = (x/2)^nu / Gamma(nu+1) sum_k
// (x^2/4)^k / (k! (nu+1)_k), summed in long double; the sum is rescaled by 1e-1000 when it
// grows (x up to 1e5 has terms near e^{1e5}).
ld ref_log_ive_series(ld nu, ld x) {
  const ld q = x * x / 4;
  ld t = 1, s = 1, off = 0;
  const ld big = 1e1000L, log_big = 1000 * std::log(10.0L);
  for (long k = 1;; ++k) {
    t *= q / (ld(k) * (nu + ld(k)));
    s += t;
    if (s > big) {
      s /= big;
      t /= big;
      off += log_big;
    }
    if (ld(k) * (nu + ld(k)) > q && t < 1e-22L * s) break;
  }
  return nu * std::log(x / 2) - std::lgamma(nu + 1) + std::log(s) + off - x;
}

// Gauss-Legendre 20-point rule on [-1, 1] (nodes by Newton's method in long double).
struct GaussLegendre {
  static constexpr int n = 20;
  ld x[n], w[n];
  GaussLegendre() {
    for (int i = 0; i < n; ++i) {
      ld z = std::cos(pi_l * (i + 0.75L) / (n + 0.5L)), dp = 0;
      for (int it = 0; it < 100; ++it) {
        ld p0 = 1, p1 = z;
        for (int k = 2; k <= n; ++k) {
          const ld p2 = ((2 * k - 1) * z * p1 - (k - 1) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = n * (z * p1 - p0) / (z * z - 1);
        const ld dz = p1 / dp;
        z -= dz;
        if (std::abs(dz) < 1e-19L) break;
      }
      x[i] = z;
      w[i] = 2 / ((1 - z * z) * dp * dp);
    }
  }
};
const GaussLegendre& gl() {
  static const GaussLegendre g;
  return g;
}

// Composite Gauss-Legendre on [a, b] with `panels` equal panels.
ld integrate(const std::function<ld(ld)>& f, ld a, ld b, int panels) {
  const auto& g = gl();
  ld s = 0;
  const ld h = (b - a) / panels;
  for (int p = 0; p < panels; ++p) {
    const ld c = a + (p + 0.5L) * h;
    for (int i = 0; i < GaussLegendre::n; ++i) s += g.w[i] * f(c + 0.5L * h * g.x[i]);
  }
  return s * h / 2;
}
// Composite rule on [a, b] refined geometrically towards a (for integrands peaked at a).
ld integrate_graded(const std::function<ld(ld)>& f, ld a, ld b, ld smallest) {
  ld s = 0, lo = a, hi = a + smallest;
  s += integrate(f, lo, hi, 4);
  while (hi < b) {
    lo = hi;
    hi = std::min(b, 2 * hi - a);
    s += integrate(f, lo, hi, 4);
  }
  return s;
}

// I_nu(x) e^{-x} = (1/pi) int_0^pi e^{x (cos t - 1)} cos(nu t) dt
//                - (sin(nu pi)/pi) int_0^inf e^{-x (cosh t + 1) - nu t} dt      (DLMF 10.32.4)
ld ref_ive_integral(ld nu, ld x) {
  // e^{x (cos t - 1)} < e^{-80} beyond t1.
  const ld t1 = 160 / x >= 2 ? pi_l : std::acos(1 - 160 / x);
  const ld a = integrate([&](ld t) { return std::exp(x * (std::cos(t) - 1)) * std::cos(nu * t); }, 0, t1, 400) / pi_l;
  const ld frac = nu - std::floor(nu);
  if (frac == 0) return a;
  ld t2 = 1;
  while (x * (std::cosh(t2) + 1) + nu * t2 < 90) t2 *= 1.5L;
  const ld b = integrate([&](ld t) { return std::exp(-x * (std::cosh(t) + 1) - nu * t); }, 0, t2, 400);
  return a - std::sin(nu * pi_l) / pi_l * b;
}

const std::vector<double> grid_x = {1e-3, 0.1, 1, 10, 100, 1e3, 1e4, 1e5};
const std::vector<double> grid_nu = {0, 0.5, 1, 14, 15, 16, 31, 64, 127.5, 128};

}  // namespace

TEST_CASE("bessel: Debye coefficients u_1, u_2, u_3 match DLMF 10.41.10") {
  const auto& c = detail::debye_table;
  CHECK(c[1][1] == doctest::Approx(3.0 / 24).epsilon(1e-15));
  CHECK(c[1][3] == doctest::Approx(-5.0 / 24).epsilon(1e-15));
  CHECK(c[2][2] == doctest::Approx(81.0 / 1152).epsilon(1e-15));
  CHECK(c[2][4] == doctest::Approx(-462.0 / 1152).epsilon(1e-15));
  CHECK(c[2][6] == doctest::Approx(385.0 / 1152).epsilon(1e-15));
  CHECK(c[3][3] == doctest::Approx(30375.0 / 414720).epsilon(1e-14));
  CHECK(c[3][5] == doctest::Approx(-369603.0 / 414720).epsilon(1e-14));
  CHECK(c[3][7] == doctest::Approx(765765.0 / 414720).epsilon(1e-14));
  CHECK(c[3][9] == doctest::Approx(-425425.0 / 414720).epsilon(1e-14));
}

TEST_CASE("bessel: log ive and I_{nu+1}/I_nu against the long-double power series over the grid") {
  int checked = 0;
  for (double nu : grid_nu)
    for (double x : grid_x) {
      CAPTURE(nu);
      CAPTURE(x);
      const ld r0 = ref_log_ive_series(nu, x), r1 = ref_log_ive_series(nu + 1, x);
      const BesselLogIve b = bessel_log_ive_ratio(nu, x);
      REQUIRE(std::isfinite(b.log_ive));
      REQUIRE(std::isfinite(b.ratio));
      // relative error of ive = absolute error of its log
      CHECK(std::abs(ld(b.log_ive) - r0) <= 1e-10L);
      CHECK(std::abs(ld(log_bessel_ive(nu, x)) - r0) <= 1e-10L);
      const ld ratio = std::exp(r1 - r0);
      CHECK(std::abs(ld(b.ratio) / ratio - 1) <= 1e-10L);
      CHECK(std::abs(ld(bessel_ratio(nu, x)) / ratio - 1) <= 1e-10L);
      const double ive = bessel_ive(nu, x);
      CHECK(std::isfinite(ive));
      if (r0 > -700) CHECK(std::abs(ld(ive) / std::exp(r0) - 1) <= 1e-10L);
      else CHECK(ive >= 0.0);  // below the double range: underflows, never NaN
      ++checked;
    }
  CHECK(checked == 80);
}

TEST_CASE("bessel: the long-double series reference agrees with quadrature of the integral representation") {
  // The two references are independent of each other and of the implementation; where
  // ive is not tiny (no cancellation in the oscillatory integral) both must agree with
  // the implementation.
  int checked = 0;
  for (double nu : grid_nu)
    for (double x : grid_x) {
      const ld series = ref_log_ive_series(nu, x);
      if (series < -12) continue;
      CAPTURE(nu);
      CAPTURE(x);
      const ld quad = std::log(ref_ive_integral(nu, x));
      CHECK(std::abs(quad - series) <= 1e-11L);
      CHECK(std::abs(ld(log_bessel_ive(nu, x)) - quad) <= 1e-10L);
      ++checked;
    }
  CHECK(checked >= 30);
}

TEST_CASE("bessel: closed forms for half-integer orders") {
  for (double x : grid_x) {
    CAPTURE(x);
    const ld xl = x;
    // I_{1/2}(x) = sqrt(2/(pi x)) sinh x;  I_{3/2}(x) = sqrt(2/(pi x)) (cosh x - sinh x / x)
    const ld half = std::log(-std::expm1(-2 * xl) / 2) - 0.5L * std::log(pi_l * xl / 2);
    const ld e2 = std::exp(-2 * xl);
    const ld three_half = std::log((1 + e2) / 2 - (1 - e2) / (2 * xl)) - 0.5L * std::log(pi_l * xl / 2);
    CHECK(std::abs(ld(log_bessel_ive(0.5, x)) - half) <= 1e-12L);
    if (x >= 0.1) CHECK(std::abs(ld(log_bessel_ive(1.5, x)) - three_half) <= 1e-12L);
    // A(1/2, x) = coth x - 1/x
    const ld coth = (1 + e2) / (1 - e2);
    const ld A = x < 0.01 ? xl / 3 - xl * xl * xl / 45 + 2 * std::pow(xl, 5) / 945 : coth - 1 / xl;
    CHECK(std::abs(ld(bessel_ratio(0.5, x)) / A - 1) <= 1e-12L);
  }
}

TEST_CASE("bessel: high-precision values") {
  // {nu, x, log ive(nu, x), I_{nu+1}(x)/I_nu(x)}: mpmath at 50 digits (besseli), confirmed
  // by a 40-digit hand-summed power series (agreement better than 1e-35).
  struct V {
    double nu, x;
    ld log_ive, ratio;
  };
  const V vals[] = {
      {0.0, 0.001, -0.0009997500000156250190702L, 0.0004999999375000104270732L},
      {0.5, 700.0, -4.194478700726375078351L, 0.9985714285714285714286L},
      {1.0, 10000.0, -5.524146221067928193414L, 0.9998500037503750492272L},
      {15.0, 1.0, -39.28086126454874390236L, 0.03122132733536100459634L},
      {15.0, 50.0, -5.127980185111369429459L, 0.7348304570795554303524L},
      {16.0, 50.0, -5.436095662129294492275L, 0.7208581277024236707734L},
      {15.0, 100000.0, -6.676525021306488386936L, 0.9998450112376123135424L},
      {16.0, 100000.0, -6.676680022080875472605L, 0.9998350127876277951548L},
      {64.0, 100.0, -23.16075888882617487296L, 0.5437221211401456276897L},
      {127.5, 0.001, -1463.094550384911266617L, 0.000003891050583599130970779L},
      {128.0, 100000.0, -6.757320414102833569022L, 0.9987158191953564506536L},
      {128.0, 1000.0, -12.55762803372464447345L, 0.8796666653532732288368L},
  };
  for (const V& v : vals) {
    CAPTURE(v.nu);
    CAPTURE(v.x);
    const BesselLogIve b = bessel_log_ive_ratio(v.nu, v.x);
    CHECK(std::abs(ld(b.log_ive) - v.log_ive) <= 1e-12L * std::max(ld(1), std::abs(v.log_ive)));
    CHECK(std::abs(ld(b.ratio) / v.ratio - 1) <= 1e-12L);
    // The test's own series reference reproduces them too.
    CHECK(std::abs(ref_log_ive_series(v.nu, v.x) - v.log_ive) <= 1e-13L * std::max(ld(1), std::abs(v.log_ive)));
  }
}

TEST_CASE("bessel: finite everywhere, ratio within Amos' bounds, ive <= 1") {
  int n = 0;
  for (double nu = 0; nu <= 200; nu += 0.5)
    for (int k = -45; k <= 75; ++k) {
      const double x = std::pow(10.0, k / 15.0);  // 1e-3 .. 1e5
      const BesselLogIve b = bessel_log_ive_ratio(nu, x);
      const bool finite = std::isfinite(b.log_ive) && std::isfinite(b.ratio);
      if (!finite) FAIL_CHECK("non-finite at nu=" << nu << " x=" << x);
      // Amos (1974): x/(nu+1/2+sqrt(x^2+(nu+3/2)^2)) <= A <= x/(nu+1/2+sqrt(x^2+(nu+1/2)^2)),
      // and A >= x/(nu+1+sqrt(x^2+(nu+1)^2)).
      const double up = x / (nu + 0.5 + std::sqrt(x * x + (nu + 0.5) * (nu + 0.5)));
      const double lo = std::max(x / (nu + 0.5 + std::sqrt(x * x + (nu + 1.5) * (nu + 1.5))),
                                 x / (nu + 1 + std::sqrt(x * x + (nu + 1) * (nu + 1))));
      if (!(b.ratio <= up * (1 + 1e-12) && b.ratio >= lo * (1 - 1e-12)))
        FAIL_CHECK("ratio " << b.ratio << " outside [" << lo << ", " << up << "] at nu=" << nu << " x=" << x);
      if (!(b.log_ive <= 0)) FAIL_CHECK("ive > 1 at nu=" << nu << " x=" << x);
      ++n;
    }
  CHECK(n == 401 * 121);
  // Far outside the tested range: still no overflow or NaN.
  for (double nu : {0.0, 15.0, 128.0, 500.0})
    for (double x : {1e-300, 1e-30, 1e6, 1e12, 1e200}) {
      CAPTURE(nu);
      CAPTURE(x);
      const BesselLogIve b = bessel_log_ive_ratio(nu, x);
      CHECK(std::isfinite(b.log_ive));
      CHECK(std::isfinite(b.ratio));
      CHECK(!std::isnan(bessel_ive(nu, x)));
    }
  CHECK(log_bessel_ive(0, 0) == 0.0);
  CHECK(std::isinf(log_bessel_ive(3, 0)));
}

// ---------------------------------------------------------------------------------------
// The sampler.

namespace {

struct Samples {
  int m = 0, n = 0;
  std::vector<double> mu, kappa, w, r, eps, v, uh, z;
};

Samples draw(int m, double kappa, int n, uint64_t key, bool blend, uint64_t mu_seed = 7) {
  Samples s;
  s.m = m;
  s.n = n;
  std::vector<double> dir(m);
  Rng(mu_seed).normal(dir.data(), size_t(m));
  double norm = 0;
  for (double d : dir) norm += d * d;
  for (double& d : dir) d /= std::sqrt(norm);
  s.mu.resize(size_t(n) * m);
  for (int i = 0; i < n; ++i) std::copy(dir.begin(), dir.end(), s.mu.begin() + size_t(i) * m);
  s.kappa.assign(n, kappa);
  s.w.resize(n), s.r.resize(n), s.eps.resize(n), s.v.resize(size_t(n) * (m - 1));
  s.uh.resize(size_t(n) * m), s.z.resize(size_t(n) * m);
  vmf_ops<cpu>::sample_w(n, m, s.kappa.data(), key, nullptr, blend, s.w.data(), s.r.data(), s.eps.data(), s.v.data());
  vmf_ops<cpu>::householder_forward(n, m, s.mu.data(), s.w.data(), s.r.data(), s.v.data(), s.uh.data(), s.z.data());
  return s;
}

// Mean of mu.z (the resultant length along mu), its standard error, and the mean vector.
struct Moments {
  double w_mean = 0, w_se = 0, w2_mean = 0, resultant = 0, perp2 = 0;
};
Moments moments(const Samples& s) {
  Moments mo;
  const int m = s.m, n = s.n;
  std::vector<double> zbar(m, 0.0);
  double sw = 0, sw2 = 0;
  for (int i = 0; i < n; ++i) {
    double d = 0;
    for (int j = 0; j < m; ++j) {
      d += s.mu[size_t(i) * m + j] * s.z[size_t(i) * m + j];
      zbar[j] += s.z[size_t(i) * m + j] / n;
    }
    sw += d;
    sw2 += d * d;
  }
  mo.w_mean = sw / n;
  mo.w2_mean = sw2 / n;
  mo.w_se = std::sqrt(std::max(sw2 / n - mo.w_mean * mo.w_mean, 0.0) / n);
  double along = 0, r2 = 0;
  for (int j = 0; j < m; ++j) along += zbar[j] * s.mu[j], r2 += zbar[j] * zbar[j];
  mo.resultant = std::sqrt(r2);
  mo.perp2 = std::max(r2 - along * along, 0.0);
  return mo;
}

// E[w] under the accepted density of Wood's loop with envelope (b, a, d), computed in the
// proposal variable eps ~ Beta(alpha, alpha): density proportional to
// eps^{alpha-1} (1-eps)^{alpha-1} min(1, exp((m-1) ln t - t + d)). Exact vMF when b is
// the exact b; with the blended b it is what the authors' sampler really draws.
double predicted_mean_w(int m, double kappa, bool blend) {
  const auto env = detail::vmf_envelope(m, kappa, blend);
  const ld alpha = (m - 1) / 2.0L, b = env.b, a = env.a, d = env.d;
  auto dens = [&](ld e) {
    const ld D = 1 - (1 - b) * e, t = 2 * a * b / D;
    const ld l = (m - 1) * std::log(t) - t + d;
    const ld logbeta = (alpha - 1) * (std::log(e) + std::log1p(-e));
    return std::exp(logbeta + std::min(l, ld(0)));
  };
  const ld Z = integrate(dens, 0, 1, 400);
  const ld M = integrate([&](ld e) { return dens(e) * (1 - (1 + b) * e) / (1 - (1 - b) * e); }, 0, 1, 400);
  return double(M / Z);
}

// KL(vMF_m(kappa) || uniform) from its definition, without Bessel functions: with w = cos th,
// the density of th is proportional to e^{kappa cos th} sin^{m-2} th on [0, pi], so
//   KL = kappa E[w] - log( int e^{kappa cos} sin^{m-2} / int sin^{m-2} ).
ld kl_by_quadrature(int m, ld kappa) {
  auto g = [&](ld th) { return std::exp(kappa * (std::cos(th) - 1)) * std::pow(std::sin(th), ld(m - 2)); };
  const ld smallest = 1e-3L / std::sqrt(kappa + 1);
  const ld Zk = integrate_graded(g, 0, pi_l, smallest);
  const ld Mk = integrate_graded([&](ld th) { return g(th) * std::cos(th); }, 0, pi_l, smallest);
  const ld Z0 = integrate([&](ld th) { return std::pow(std::sin(th), ld(m - 2)); }, 0, pi_l, 200);
  return kappa * Mk / Zk - (kappa + std::log(Zk) - std::log(Z0));
}

double A_m(int m, double kappa) { return bessel_ratio(0.5 * m - 1, kappa); }

// ---------------------------------------------------------------------------------------
// The proposal's own samplers (Wood's eps ~ Beta(alpha, alpha) from two Gamma(alpha) draws),
// against their exact CDFs by Kolmogorov-Smirnov. Checking the vMF draws alone cannot see a
// wrong Gamma sampler: Marsaglia & Tsang's proposal (1 + c x)^3 is so close to Gamma(alpha)
// that even a sampler which never rejects moves E[w] by less than the moment checks resolve.

// The Gamma(a) CDF P(a, x) is stats::gamma_p (tests/stats.hpp).
// I_x(a, a), the regularised incomplete beta function of the symmetric Beta, by
//   I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * sum_n ((a+b)_n / (a+1)_n) x^n   for x <= 1/2
// (terms fall by about x per term) and I_x(a, a) = 1 - I_{1-x}(a, a) above.
ld beta_symmetric_cdf(ld a, ld x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  if (x > 0.5L) return 1 - beta_symmetric_cdf(a, 1 - x);
  ld t = 1, s = 1;
  for (int k = 0; k < 100000 && t > 1e-21L * s; ++k) s += (t *= x * (2 * a + k) / (a + 1 + k));
  const ld log_beta = 2 * std::lgamma(a) - std::lgamma(2 * a);
  return std::exp(a * std::log(x) + a * std::log1p(-x) - std::log(a) - log_beta + std::log(s));
}
using stats::gamma_p;
using stats::ks_p001;
using stats::ks_statistic;

}  // namespace

TEST_CASE("vmf proposal: Gamma(alpha) and Beta(alpha, alpha) draws follow their CDFs (Kolmogorov-Smirnov)") {
  // The exact CDFs first: P(1, x) = 1 - e^{-x}; I_x(1/2, 1/2) = (2/pi) asin(sqrt(x)) (arcsine);
  // I_x(1, 1) = x; I_x(2, 2) = 3x^2 - 2x^3.
  for (ld x : {0.01L, 0.3L, 1.0L, 4.0L, 20.0L})
    CHECK(double(gamma_p(1, x)) == doctest::Approx(double(-std::expm1(-x))).epsilon(1e-14));
  for (ld x : {1e-6L, 0.05L, 0.3L, 0.5L, 0.77L, 0.999L}) {
    CHECK(double(beta_symmetric_cdf(0.5L, x)) ==
          doctest::Approx(double(2 / pi_l * std::asin(std::sqrt(x)))).epsilon(1e-13));
    CHECK(double(beta_symmetric_cdf(1, x)) == doctest::Approx(double(x)).epsilon(1e-13));
    CHECK(double(beta_symmetric_cdf(2, x)) == doctest::Approx(double(3 * x * x - 2 * x * x * x)).epsilon(1e-13));
  }
  // alpha = (m - 1)/2 for m = 2 (the boost below 1), 4, 10 and 32 (the paper's latent size).
  // ks_p001: a statistic as large has probability 0.001 (tests/stats.hpp); the seeds are fixed.
  const int n = 200000;
  for (double alpha : {0.5, 1.5, 4.5, 15.5}) {
    CAPTURE(alpha);
    detail::VmfRowStream g(0x5eed + uint64_t(alpha * 2), 3), b(0xbe7a + uint64_t(alpha * 2), 5);
    std::vector<double> gs(n), bs(n);
    for (int i = 0; i < n; ++i) gs[size_t(i)] = g.gamma(alpha), bs[size_t(i)] = b.beta_symmetric(alpha);
    CHECK(ks_statistic(gs, [&](double x) { return gamma_p(alpha, x); }) < ks_p001);
    CHECK(ks_statistic(bs, [&](double x) { return beta_symmetric_cdf(alpha, x); }) < ks_p001);
  }
}

TEST_CASE("vmf sampler (exact b): mean resultant length = A_m(kappa), mean direction = mu, unit norm") {
  for (int m : {3, 10, 32})
    for (double kappa : {1.0, 5.0, 50.0, 500.0}) {
      CAPTURE(m);
      CAPTURE(kappa);
      const int n = 20000;
      const Samples s = draw(m, kappa, n, 1000 + m * 7 + uint64_t(kappa), /*blend=*/false);
      const Moments mo = moments(s);
      const double A = A_m(m, kappa);
      // along mu: an unbiased estimate of A
      CHECK(std::abs(mo.w_mean - A) <= 5 * mo.w_se);
      // ||mean z||: E ||zbar||^2 = A^2 + (1 - A^2)/n for unit vectors
      CHECK(std::abs(mo.resultant - std::sqrt(A * A + (1 - A * A) / n)) <= 5 * mo.w_se + 1e-12);
      // direction: n ||zbar_perp||^2 / ((1 - E w^2)/(m-1)) ~ chi^2_{m-1}
      const double chi2 = n * mo.perp2 / ((1 - mo.w2_mean) / (m - 1));
      CHECK(chi2 <= (m - 1) + 8 * std::sqrt(2.0 * (m - 1)) + 8);
      // unit norm up to the 1e-5 in the reflection: ||z||^2 = 1 - 4 (x.uh)^2 (1 - ||uh||^2)
      double worst = 0, worst_formula = 0;
      for (int i = 0; i < n; i += 7) {
        double z2 = 0, xu = 0, u2 = 0;
        for (int j = 0; j < m; ++j) {
          const double zj = s.z[size_t(i) * m + j], hj = s.uh[size_t(i) * m + j];
          const double xj = j == 0 ? s.w[i] : s.r[i] * s.v[size_t(i) * (m - 1) + j - 1];
          z2 += zj * zj, xu += xj * hj, u2 += hj * hj;
        }
        worst = std::max(worst, std::abs(std::sqrt(z2) - 1));
        worst_formula = std::max(worst_formula, std::abs(z2 - (1 - 4 * xu * xu * (1 - u2))));
      }
      CHECK(worst < 1e-4);
      CHECK(worst_formula < 1e-12);
      // the quadrature of the accepted density reproduces A exactly for the exact b
      if (m != 3) CHECK(predicted_mean_w(m, kappa, false) == doctest::Approx(A).epsilon(1e-9));
    }
}

TEST_CASE("vmf sampler: m = 2 (Beta(1/2, 1/2) proposals through the Gamma boost) matches A_2(kappa)") {
  for (double kappa : {1.0, 5.0, 50.0}) {
    CAPTURE(kappa);
    const Samples s = draw(2, kappa, 20000, 77, false);
    const Moments mo = moments(s);
    CHECK(std::abs(mo.w_mean - A_m(2, kappa)) <= 5 * mo.w_se);
  }
}

TEST_CASE("vmf sampler (svae_blend, the authors' b): what it samples, and where it departs from vMF") {
  for (int m : {10, 32})
    for (double kappa : {1.0, 5.0, 10.5, 11.0, 50.0, 500.0}) {
      CAPTURE(m);
      CAPTURE(kappa);
      const int n = 20000;
      const Samples s = draw(m, kappa, n, 555 + m + uint64_t(kappa * 10), /*blend=*/true);
      const Moments mo = moments(s);
      CHECK(std::abs(mo.w_mean - predicted_mean_w(m, kappa, true)) <= 5 * mo.w_se);
      if (kappa <= 10) {
        // s = 0: the same b as the exact sampler, hence the same draws
        const Samples e = draw(m, kappa, 50, 555 + m + uint64_t(kappa * 10), false);
        for (int i = 0; i < 50 * m; ++i) CHECK(e.z[i] == s.z[i]);
      }
    }
  // The blend samples a vMF of concentration a (1 - b) != kappa: at m = 32, kappa = 11,
  // E[w] = 0.168 instead of A_32(11) = 0.312 (reference.md §3 reproduces the authors' code).
  const Samples s = draw(32, 11.0, 20000, 9, true);
  const Moments mo = moments(s);
  CHECK(mo.w_mean == doctest::Approx(0.1681).epsilon(0.03));
  CHECK(A_m(32, 11.0) - mo.w_mean > 50 * mo.w_se);
}

TEST_CASE("vmf sampler: replay by position, independent per-row streams") {
  using M = Posterior<VMF>::module<double, cpu>;
  Arena<double> ar;
  M post(ar, "posterior", 3, 6);
  ar.finalize();
  ar.initialise(4);
  std::vector<double> e(4 * 3);
  Rng(5).normal(e.data(), e.size());
  Context<> ctx(11);
  M::Cache c1, c2, c3;
  post.sample(ctx, ar, {e.data(), 4, 3}, c1);
  CHECK(ctx.rng.position == 1);
  post.sample(ctx, ar, {e.data(), 4, 3}, c2);
  ctx.rng.position = 0;
  post.sample(ctx, ar, {e.data(), 4, 3}, c3);
  const auto z1 = c1.z.to_host(), z2 = c2.z.to_host(), z3 = c3.z.to_host();
  for (int i = 0; i < 24; ++i) CHECK(z1[i] == z3[i]);
  int same = 0;
  for (int i = 0; i < 24; ++i) same += z1[i] == z2[i];
  CHECK(same == 0);
  // Row 1's draws do not depend on how many proposals row 0 needed (its kappa changes).
  std::vector<double> k1 = {2.0, 30.0}, k2 = {700.0, 30.0};
  std::vector<double> w1(2), r1(2), e1(2), v1(2 * 5), w2(2), r2(2), e2(2), v2(2 * 5);
  vmf_ops<cpu>::sample_w(2, 6, k1.data(), 123, nullptr, true, w1.data(), r1.data(), e1.data(), v1.data());
  vmf_ops<cpu>::sample_w(2, 6, k2.data(), 123, nullptr, true, w2.data(), r2.data(), e2.data(), v2.data());
  CHECK(w1[1] == w2[1]);
  CHECK(e1[1] == e2[1]);
  for (int j = 0; j < 5; ++j) CHECK(v1[5 + j] == v2[5 + j]);
}

TEST_CASE("vmf: module forward against an independent computation (m = 3 closed forms)") {
  using M = Posterior<VMF>::module<double, cpu>;
  Arena<double> ar;
  M post(ar, "posterior", 4, 3);
  ar.finalize();
  ar.initialise(8);
  CHECK(ar.infos().size() == 4);
  CHECK(ar.infos()[0].name == "posterior.mu.weight");
  CHECK(ar.infos()[2].name == "posterior.kappa.weight");
  const int n = 5;
  std::vector<double> e(n * 4);
  Rng(3).normal(e.data(), e.size());
  for (double& x : e) x *= 3;
  Context<> ctx(2);
  M::Cache c;
  post.sample(ctx, ar, {e.data(), n, 4}, c);
  const double *Wm = ar.value(post.mu.W), *bm = ar.value(post.mu.b), *Wk = ar.value(post.kappa.W),
               *bk = ar.value(post.kappa.b);
  const auto z = c.z.to_host(), kl = c.kl.to_host(), lq = c.logq.to_host(), lp = c.logp.to_host();
  for (int i = 0; i < n; ++i) {
    double mu[3], nrm = 0, raw = bk[0];
    for (int j = 0; j < 3; ++j) {
      mu[j] = bm[j];
      for (int k = 0; k < 4; ++k) mu[j] += Wm[j * 4 + k] * e[i * 4 + k];
      nrm += mu[j] * mu[j];
    }
    for (int k = 0; k < 4; ++k) raw += Wk[k] * e[i * 4 + k];
    const double kappa = std::log(1 + std::exp(raw)) + 1;
    CHECK(c.kappa.data()[i] == doctest::Approx(kappa).epsilon(1e-13));
    double dot = 0, z2 = 0;
    for (int j = 0; j < 3; ++j) dot += mu[j] / std::sqrt(nrm) * z[i * 3 + j], z2 += z[i * 3 + j] * z[i * 3 + j];
    CHECK(std::sqrt(z2) == doctest::Approx(1).epsilon(1e-4));
    // m = 3: C = kappa / (4 pi sinh kappa), KL = kappa coth kappa - 1 + ln kappa - ln sinh kappa
    const double log_sinh = kappa + std::log1p(-std::exp(-2 * kappa)) - std::log(2.0);
    const double logC = std::log(kappa) - std::log(4 * M_PI) - log_sinh;
    CHECK(kl[i] == doctest::Approx(kappa / std::tanh(kappa) - 1 + std::log(kappa) - log_sinh).epsilon(1e-12));
    CHECK(lq[i] == doctest::Approx(kappa * dot + logC).epsilon(1e-12));
    CHECK(lp[i] == doctest::Approx(-std::log(4 * M_PI)).epsilon(1e-14));
  }
  // The deterministic code is the direction.
  Arena<double> ar2;
  M det(ar2, "couple.posterior", 4, 3, true);
  CHECK(!det.kappa.W.valid());
  CHECK(ar2.infos().size() == 2);
  CHECK_THROWS_AS(M(ar2, "bad", 4, 1), Error);
  CHECK(ar2.infos().size() == 2);
  M::Cache cd;
  post.mean(ctx, ar, {e.data(), n, 4}, cd);
  for (int i = 0; i < n * 3; ++i) CHECK(cd.z.data()[i] == doctest::Approx(c.mu.data()[i]).epsilon(1e-14));
}

TEST_CASE("vmf KL: analytic form against quadrature of its definition (m = 2, 3, 10, 32) and m = 3 closed form") {
  for (int m : {2, 3, 10, 32})
    for (double kappa : {1.0, 2.5, 5.0, 50.0, 500.0, 5000.0}) {
      CAPTURE(m);
      CAPTURE(kappa);
      double kl = 0;
      vmf_ops<cpu>::density<double>(1, m, nullptr, &kappa, nullptr, &kl, nullptr, nullptr);
      const ld ref = kl_by_quadrature(m, kappa);
      CHECK(std::abs(ld(kl) - ref) <= 1e-9L * std::max(ld(1), std::abs(ref)));
      if (m == 3) {
        const ld k = kappa, log_sinh = k + std::log1p(-std::exp(-2 * k)) - std::log(2.0L);
        const ld closed = k * (1 + std::exp(-2 * k)) / (1 - std::exp(-2 * k)) - 1 + std::log(k) - log_sinh;
        CHECK(std::abs(ld(kl) - closed) <= 1e-11L * std::max(ld(1), closed));
      }
    }
}

TEST_CASE("vmf KL: Monte Carlo estimate mean(logq - logp) over exact samples (m = 32)") {
  using M = Posterior<VMF>::module<double, cpu>;
  for (double target : {1.5, 5.0, 50.0}) {
    CAPTURE(target);
    Arena<double> ar;
    M post(ar, "posterior", 2, 32);
    post.svae_blend = false;
    ar.finalize();
    ar.initialise(1);
    // mu = b_mu / ||b_mu||, kappa = softplus(b_k) + 1 exactly: zero weights.
    ops<cpu>::fill(ar.value(post.mu.W), size_t(64), 0.0);
    ops<cpu>::fill(ar.value(post.kappa.W), size_t(2), 0.0);
    ar.value(post.kappa.b)[0] = std::log(std::expm1(target - 1));
    const int n = 20000;
    std::vector<double> e(size_t(n) * 2, 0.0);
    Context<> ctx(17);
    M::Cache c;
    post.sample(ctx, ar, {e.data(), n, 2}, c);
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double d = c.logq.data()[i] - c.logp.data()[i];
      s += d, s2 += d * d;
    }
    const double mean = s / n, se = std::sqrt((s2 / n - mean * mean) / n);
    CHECK(c.kappa.data()[0] == doctest::Approx(target).epsilon(1e-12));
    CHECK(std::abs(mean - c.kl.data()[0]) <= 5 * se);
  }
}

// ---------------------------------------------------------------------------------------
// Gradients.


TEST_CASE("vmf: sample gradients (dz and dkl) by finite differences, both samplers, kappa across the blend") {
  using M = Posterior<VMF>::module<double, cpu>;
  struct Case {
    int Z;
    double kappa_bias;  // kappa ~ softplus(bias) + 1
    bool blend;
  };
  const Case cases[] = {{2, 0.3, true},   {3, 0.5, true},   {5, 0.0, true},   {5, 9.45, true},
                        {5, 12.0, true},  {5, 60.0, true},  {32, 2.0, true},  {32, 9.45, true},
                        {5, 9.45, false}, {32, 40.0, false}, {3, 30.0, false}};
  for (const Case& cs : cases) {
    CAPTURE(cs.Z);
    CAPTURE(cs.kappa_bias);
    CAPTURE(cs.blend);
    const int n = 6, in = 4, Z = cs.Z;
    Arena<double> ar;
    M post(ar, "posterior", in, Z);
    post.svae_blend = cs.blend;
    ar.finalize();
    ar.initialise(21);
    ar.value(post.kappa.b)[0] = cs.kappa_bias;
    for (int k = 0; k < in; ++k) ar.value(post.kappa.W)[k] *= 0.05;  // keep kappa off the blend's kinks
    auto e = randn(size_t(n) * in, 3);
    const auto cz = randn(size_t(n) * Z, 4), ck = randn(n, 5);
    Context<> ctx(9);
    M::Cache c;
    auto loss = [&] {
      ctx.rng.position = 0;
      post.sample(ctx, ar, {e.data(), n, in}, c);
      return dot(c.z.data(), cz) + dot(c.kl.data(), ck);
    };
    std::vector<double> de;
    const auto pre_de = randn(e.size(), 6);
    auto probes = gradcheck::arena_probes(ar, [&] {
      loss();
      de = pre_de;
      std::vector<double> dz = cz, dkl = ck;
      post.sample_backward(ctx, ar, {e.data(), n, in}, {dz.data(), n, Z}, {dkl.data(), n, 1}, {de.data(), n, in}, c);
      for (size_t i = 0; i < de.size(); ++i) de[i] -= pre_de[i];
    });
    const double k0 = c.kappa.data()[0];
    if (cs.kappa_bias == 9.45) CHECK((k0 > 10.2 && k0 < 10.8));
    probes.push_back({"e", e.data(), de});
    CHECK(gradcheck::check(probes, loss) > 20);
  }
}

TEST_CASE("vmf: kl-only and dz-only backward paths") {
  using M = Posterior<VMF>::module<double, cpu>;
  const int n = 4, in = 3, Z = 8;
  Arena<double> ar;
  M post(ar, "posterior", in, Z);
  ar.finalize();
  ar.initialise(5);
  auto e = randn(size_t(n) * in, 8);
  const auto ck = randn(n, 9);
  Context<> ctx(1);
  M::Cache c;
  auto loss = [&] {
    ctx.rng.position = 0;
    post.sample(ctx, ar, {e.data(), n, in}, c);
    return dot(c.kl.data(), ck);
  };
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    std::vector<double> dkl = ck, de(e.size(), 0.0);
    post.sample_backward(ctx, ar, {e.data(), n, in}, View<double>{}, {dkl.data(), n, 1}, {de.data(), n, in}, c);
  });
  CHECK(gradcheck::check(probes, loss) > 10);
}

TEST_CASE("vmf: mean (deterministic direction) gradients") {
  using M = Posterior<VMF>::module<double, cpu>;
  const int n = 5, in = 4, Z = 6;
  Arena<double> ar;
  M post(ar, "couple.posterior", in, Z, true);
  ar.finalize();
  ar.initialise(12);
  CHECK(ar.infos().size() == 2);
  auto e = randn(size_t(n) * in, 13);
  const auto cz = randn(size_t(n) * Z, 14);
  Context<> ctx(1);
  M::Cache c;
  auto loss = [&] {
    post.mean(ctx, ar, {e.data(), n, in}, c);
    return dot(c.z.data(), cz);
  };
  std::vector<double> de;
  const auto pre_de = randn(e.size(), 15);
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    de = pre_de;
    std::vector<double> dz = cz;
    post.mean_backward(ctx, ar, {e.data(), n, in}, {dz.data(), n, Z}, {de.data(), n, in}, c);
    for (size_t i = 0; i < de.size(); ++i) de[i] -= pre_de[i];
  });
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int j = 0; j < Z; ++j) s += c.z.data()[i * Z + j] * c.z.data()[i * Z + j];
    CHECK(s == doctest::Approx(1).epsilon(1e-14));
  }
  probes.push_back({"e", e.data(), de});
  CHECK(gradcheck::check(probes, loss) > 20);
}

TEST_CASE("vmf_ops: the _acc kernels accumulate") {
  // Each kernel run on pre-filled outputs must give pre-fill + its result on zeros.
  const int n = 5, Z = 7;
  const Samples s = draw(Z, 12.0, n, 3, true);
  std::vector<double> norm(n, 1.7), k = randn(n, 1), dz = randn(size_t(n) * Z, 2), dmu_in = randn(size_t(n) * Z, 3);
  std::vector<double> dw_in = randn(n, 4), dr_in = randn(n, 5), dkl = randn(n, 6);
  auto both = [&](size_t len, const std::function<void(double*)>& run) {
    std::vector<double> zero(len, 0.0), pre = randn(len, 7), acc = pre;
    run(zero.data());
    run(acc.data());
    for (size_t i = 0; i < len; ++i) CHECK(acc[i] == doctest::Approx(pre[i] + zero[i]).epsilon(1e-13));
  };
  both(size_t(n) * Z, [&](double* o) { vmf_ops<cpu>::normalize_backward_acc(n, Z, s.mu.data(), norm.data(), dmu_in.data(), o); });
  both(n, [&](double* o) { vmf_ops<cpu>::kappa_backward_acc(n, k.data(), dw_in.data(), o); });
  both(n, [&](double* o) { vmf_ops<cpu>::kl_backward_acc(n, Z, s.kappa.data(), dkl.data(), o); });
  both(n, [&](double* o) {
    vmf_ops<cpu>::sample_w_backward_acc(n, Z, s.kappa.data(), s.eps.data(), s.w.data(), s.r.data(), true, dw_in.data(),
                                        dr_in.data(), o);
  });
  std::vector<double> dw0(n), dr0(n);
  both(size_t(n) * Z, [&](double* o) {
    vmf_ops<cpu>::householder_backward_acc(n, Z, s.mu.data(), s.w.data(), s.r.data(), s.v.data(), s.uh.data(), dz.data(),
                                           o, dw0.data(), dr0.data());
  });
  both(n, [&](double* o) {
    std::vector<double> dm(size_t(n) * Z), dr(n);
    vmf_ops<cpu>::householder_backward_acc(n, Z, s.mu.data(), s.w.data(), s.r.data(), s.v.data(), s.uh.data(), dz.data(),
                                           dm.data(), o, dr.data());
  });
  both(n, [&](double* o) {
    std::vector<double> dm(size_t(n) * Z), dw(n);
    vmf_ops<cpu>::householder_backward_acc(n, Z, s.mu.data(), s.w.data(), s.r.data(), s.v.data(), s.uh.data(), dz.data(),
                                           dm.data(), dw.data(), o);
  });
}

// ---------------------------------------------------------------------------------------
// Whole models.

namespace {
using SVAEd = Model<Posterior<VMF>, Regularizer<KL>, Decoder<GRU>, cpu, double>;
using CSVAEd = Coupled<SVAEd>;

Config tiny_vmf_config(int latent) {
  Config c = Config::preset("ptb");
  c.vocab_size = 13;
  c.embed = 4;
  c.hidden = 3;
  c.latent = latent;
  c.mlp_hidden = 5;
  c.kl_start = 0;
  c.kl_anneal_steps = 10;  // weight 0.5 at step 5
  return c;
}

Batch tiny_vmf_batch(int V) { return make_batch({{4, 5, 6}, {7, 3}, {8, 9, 10, 11, 12}, {5}}, V); }

template <class M>
void check_vmf_model_gradients(M& model, const Batch& b, long step) {
  Context<> ctx(123, true);
  auto loss = [&] {
    ctx.rng.position = 0;
    return model.forward(ctx, b, step).loss;
  };
  auto probes = gradcheck::arena_probes(model.arena(), [&] {
    loss();
    model.backward(ctx);
  });
  if constexpr (M::is_coupled) model.freeze_coupling_target(true);
  gradcheck::Options o;
  o.per_tensor = 6;
  CHECK(gradcheck::check(probes, loss, o) > 100);
}
}  // namespace

TEST_CASE("Model<VMF, KL, GRU>: whole-model gradient check (double, dropout on, KL weight 0.5)") {
  for (int latent : {2, 3, 5}) {
    CAPTURE(latent);
    Config c = tiny_vmf_config(latent);
    SVAEd model(c, 7);
    CHECK(SVAEd::structure() == "vmf-kl-gru");
    const Batch b = tiny_vmf_batch(c.vocab_size);
    Context<> ctx(123, true);
    const Losses l = model.forward(ctx, b, 5);
    CHECK(l.kl_weight == doctest::Approx(0.5));
    CHECK(l.kl > 0);
    CHECK(l.reg == doctest::Approx(0.5 * l.kl).epsilon(1e-12));
    check_vmf_model_gradients(model, b, 5);
  }
}

TEST_CASE("Coupled<Model<VMF, KL, GRU>>: whole-model gradient check and the direction as z^c") {
  Config c = tiny_vmf_config(5);
  c.lambda_c = 2.5;  // large, so a wrong coupling gradient shows
  CSVAEd model(c, 8);
  const Batch b = tiny_vmf_batch(c.vocab_size);
  {
    Context<> ctx(5, false);
    model.forward(ctx, b, 5);
    // z^c = normalize(W e + b) of the coupled head, recomputed through its public Linear.
    const int nb = b.size();
    std::vector<double> raw(size_t(nb) * c.latent);
    model.post_c.mu.forward(ctx, model.arena(), model.encoded(), View<double>{raw.data(), nb, c.latent});
    View<double> zc = model.coupled_code();
    for (int i = 0; i < nb; ++i) {
      double s = 0;
      for (int j = 0; j < c.latent; ++j) s += raw[i * c.latent + j] * raw[i * c.latent + j];
      for (int j = 0; j < c.latent; ++j)
        CHECK(zc.data[i * c.latent + j] == doctest::Approx(raw[i * c.latent + j] / std::sqrt(s)).epsilon(1e-13));
    }
  }
  check_vmf_model_gradients(model, b, 5);
}

TEST_CASE("Model<VMF>: importance weights are finite and their KL estimate matches the analytic KL") {
  Config c = tiny_vmf_config(5);
  SVAEd model(c, 3);
  model.post.svae_blend = false;
  const Batch b = tiny_vmf_batch(c.vocab_size);
  Context<> ctx(1, false);  // evaluation: no dropout, so kappa is the same in both calls
  const double kl = model.forward(ctx, b, 5).kl;
  const int S = 2000;
  const ImportanceTerms it = model.importance_weights(ctx, b, S);
  double s = 0, s2 = 0;
  for (size_t k = 0; k < it.log_ratio.size(); ++k) {
    REQUIRE(std::isfinite(it.log_weight[k]));
    s += it.log_ratio[k], s2 += it.log_ratio[k] * it.log_ratio[k];
  }
  const double n = double(it.log_ratio.size()), mean = s / n, se = std::sqrt((s2 / n - mean * mean) / n);
  CHECK(std::abs(mean - kl) <= 5 * se);
}

TEST_CASE("Coupled<Model<VMF, KL, GRU>> in float: a few training steps stay finite") {
  using CSVAEf = Coupled<Model<Posterior<VMF>, Regularizer<KL>, Decoder<GRU>>>;
  Config c = tiny_vmf_config(4);
  c.lambda_c = 7.5;  // the PTB s-vae-couple setting (reference.md §8)
  CSVAEf model(c, 2);
  const Batch b = tiny_vmf_batch(c.vocab_size);
  Context<> ctx(4);
  for (int step = 1; step <= 3; ++step) {
    model.zero_grad();
    const Losses l = model.forward(ctx, b, step);
    CHECK(std::isfinite(l.loss));
    model.backward(ctx);
    CHECK(ops<cpu>::all_finite(model.arena().grads().data(), model.arena().total()));
  }
}
