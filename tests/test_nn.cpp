// Gradient checks for the nn modules: Linear, Embedding, Dropout, MLP, GRU (both
// directions, variable lengths), BiGRU, VocabLoss. Loss = sum of outputs weighted by fixed random
// coefficients, so every output element carries a distinct gradient.
#include <doctest/doctest.h>

#include <couplevae/backend/cpu/ops.hpp>
#include <couplevae/nn/batch_norm.hpp>
#include <couplevae/nn/dropout.hpp>
#include <couplevae/nn/embedding.hpp>
#include <couplevae/nn/gru.hpp>
#include <couplevae/nn/linear.hpp>
#include <couplevae/nn/mlp.hpp>
#include <couplevae/nn/vocab_loss.hpp>

#include "gradcheck.hpp"

using namespace couplevae;
using gradcheck::randn;
using gradcheck::dot;
using namespace couplevae::nn;
using A = Arena<double>;


TEST_CASE("linear: forward matches a hand computation and gradients match finite differences") {
  A ar;
  Linear<double> lin(ar, "lin", 3, 2);
  ar.finalize();
  ar.initialise(1);
  Context<> ctx(5);
  auto x = randn(4 * 3, 2), w = randn(4 * 2, 3);
  std::vector<double> y(8), dx(12, 0.0);
  lin.forward(ctx, ar, {x.data(), 4, 3}, {y.data(), 4, 2});
  const double* W = ar.value(lin.W);
  const double* b = ar.value(lin.b);
  CHECK(y[1 * 2 + 1] == doctest::Approx(W[3] * x[3] + W[4] * x[4] + W[5] * x[5] + b[1]));
  auto loss = [&] {
    lin.forward(ctx, ar, {x.data(), 4, 3}, {y.data(), 4, 2});
    return dot(y.data(), w);
  };
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    std::fill(dx.begin(), dx.end(), 0.0);
    lin.backward(ctx, ar, {x.data(), 4, 3}, {w.data(), 4, 2}, {dx.data(), 4, 3});
  });
  probes.push_back({"x", x.data(), dx});
  CHECK(gradcheck::check(probes, loss) > 10);
}

TEST_CASE("embedding + dropout: scatter gradients and a fixed mask") {
  A ar;
  Embedding<double> emb(ar, "emb", 7, 5);
  Dropout<double> drop(0.3);
  ar.finalize();
  ar.initialise(2);
  Context<> ctx(11);
  std::vector<int32_t> ids = {3, 1, 3, 6, 0};
  auto w = randn(5 * 5, 4);
  std::vector<double> e(25), y(25);
  Dropout<double>::Cache dc;
  auto loss = [&] {
    ctx.rng.position = 0;  // same mask every call
    emb.forward(ctx, ar, ids.data(), 5, e.data(), 5);
    drop.forward(ctx, {e.data(), 5, 5}, {y.data(), 5, 5}, dc);
    return dot(y.data(), w);
  };
  loss();
  int zeros = 0;
  for (double v : y) zeros += v == 0.0;
  CHECK(zeros > 0);
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    std::vector<double> de(25, 0.0);
    drop.backward({w.data(), 5, 5}, {de.data(), 5, 5}, dc);
    emb.backward(ctx, ar, ids.data(), 5, de.data(), 5);
  });
  CHECK(gradcheck::check(probes, loss, {40}) > 30);
}

TEST_CASE("dropout: mask statistics and evaluation mode") {
  Dropout<double> drop(0.2);
  Context<> ctx(3);
  const int n = 200000;
  std::vector<double> x(n, 1.0), y(n);
  Dropout<double>::Cache c;
  drop.forward(ctx, {x.data(), n, 1}, {y.data(), n, 1}, c);
  double kept = 0, mean = 0;
  for (double v : y) kept += v != 0.0, mean += v;
  kept /= n;
  mean /= n;
  // Binomial(n, 0.8): sd of the fraction is 0.0009; 5 sd bounds.
  CHECK(kept == doctest::Approx(0.8).epsilon(0.006));
  CHECK(mean == doctest::Approx(1.0).epsilon(0.006));
  ctx.training = false;
  drop.forward(ctx, {x.data(), n, 1}, {y.data(), n, 1}, c);
  CHECK(std::count(y.begin(), y.end(), 1.0) == n);
}

TEST_CASE("mlp: gradients") {
  A ar;
  MLP<double> mlp(ar, "mlp", 3, 6, 4);
  ar.finalize();
  ar.initialise(3);
  Context<> ctx(1);
  auto z = randn(5 * 3, 8), w = randn(5 * 4, 9);
  std::vector<double> h(20), dz(15);
  MLP<double>::Cache c;
  auto loss = [&] {
    mlp.forward(ctx, ar, {z.data(), 5, 3}, {h.data(), 5, 4}, c);
    return dot(h.data(), w);
  };
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    std::fill(dz.begin(), dz.end(), 0.0);
    mlp.backward(ctx, ar, {z.data(), 5, 3}, {w.data(), 5, 4}, {dz.data(), 5, 3}, c);
  });
  probes.push_back({"z", z.data(), dz});
  CHECK(gradcheck::check(probes, loss) > 40);
}

namespace {
// A reference GRU on one unpadded sequence, written from the equations independently of
// the packed implementation.
std::vector<double> gru_reference(const A& ar, const GRU<double>& g, const std::vector<const double*>& xs) {
  const int H = g.H, I = g.in;
  const double *Wi = ar.value(g.W_ih), *Wh = ar.value(g.W_hh), *bi = ar.value(g.b_ih), *bh = ar.value(g.b_hh);
  std::vector<double> h(H, 0.0);
  const int T = int(xs.size());
  for (int s = 0; s < T; ++s) {
    const double* x = xs[g.reverse ? T - 1 - s : s];
    std::vector<double> gi(3 * H), gh(3 * H), hn(H);
    for (int j = 0; j < 3 * H; ++j) {
      gi[j] = bi[j];
      gh[j] = bh[j];
      for (int k = 0; k < I; ++k) gi[j] += Wi[j * I + k] * x[k];
      for (int k = 0; k < H; ++k) gh[j] += Wh[j * H + k] * h[k];
    }
    for (int k = 0; k < H; ++k) {
      const double r = 1 / (1 + std::exp(-(gi[k] + gh[k])));
      const double z = 1 / (1 + std::exp(-(gi[H + k] + gh[H + k])));
      const double n = std::tanh(gi[2 * H + k] + r * gh[2 * H + k]);
      hn[k] = (1 - z) * n + z * h[k];
    }
    h = hn;
  }
  return h;
}
}  // namespace

TEST_CASE("gru: packed variable-length forward equals a per-sequence reference, gradients") {
  for (bool rev : {false, true}) {
    CAPTURE(rev);
    A ar;
    GRU<double> g(ar, "gru", 3, 4, rev);
    ar.finalize();
    ar.initialise(7);
    Context<> ctx(1);
    const Packing pk = Packing::from_steps({4, 3, 3, 1});
    REQUIRE(pk.rows == 11);
    auto x = randn(size_t(pk.rows) * 3, 21);
    GRU<double>::Cache c;
    g.forward(ctx, ar, {x.data(), pk.rows, 3}, pk, c);
    const int lens[] = {4, 3, 3, 1};
    for (int b = 0; b < 4; ++b) {
      std::vector<const double*> xs;
      for (int t = 0; t < lens[b]; ++t) xs.push_back(x.data() + size_t(pk.row(t, b)) * 3);
      auto ref = gru_reference(ar, g, xs);
      for (int k = 0; k < 4; ++k) CHECK(c.h_final.data()[b * 4 + k] == doctest::Approx(ref[k]).epsilon(1e-12));
    }
    auto ws = randn(size_t(pk.rows) * 4, 31), wf = randn(16, 32);
    std::vector<double> dx(x.size());
    auto loss = [&] {
      g.forward(ctx, ar, {x.data(), pk.rows, 3}, pk, c);
      return dot(c.states.data(), ws) + dot(c.h_final.data(), wf);
    };
    auto probes = gradcheck::arena_probes(ar, [&] {
      loss();
      std::fill(dx.begin(), dx.end(), 0.0);
      g.backward(ctx, ar, {x.data(), pk.rows, 3}, pk, {ws.data(), pk.rows, 4}, {wf.data(), 4, 4},
                 {dx.data(), pk.rows, 3}, c);
    });
    probes.push_back({"x", x.data(), dx});
    CHECK(gradcheck::check(probes, loss) > 50);
  }
}

TEST_CASE("bigru: e = (forward final, backward final) and gradients") {
  A ar;
  BiGRU<double> enc(ar, "enc", 3, 2);
  ar.finalize();
  ar.initialise(8);
  Context<> ctx(1);
  const Packing pk = Packing::from_steps({3, 2, 1});
  auto x = randn(size_t(pk.rows) * 3, 5), w = randn(3 * 4, 6);
  std::vector<double> e(12), dx(x.size());
  BiGRU<double>::Cache c;
  auto loss = [&] {
    enc.forward(ctx, ar, {x.data(), pk.rows, 3}, pk, {e.data(), 3, 4}, c);
    return dot(e.data(), w);
  };
  loss();
  CHECK(e[2 * 4 + 0] == c.f.h_final.data()[2 * 2]);
  CHECK(e[2 * 4 + 3] == c.b.h_final.data()[2 * 2 + 1]);
  auto probes = gradcheck::arena_probes(ar, [&] {
    loss();
    std::fill(dx.begin(), dx.end(), 0.0);
    enc.backward(ctx, ar, {x.data(), pk.rows, 3}, pk, {w.data(), 3, 4}, {dx.data(), pk.rows, 3}, c);
  });
  probes.push_back({"x", x.data(), dx});
  CHECK(gradcheck::check(probes, loss) > 50);
}

TEST_CASE("batch norm: training-mode gradients through the batch statistics, running statistics, eval mode") {
  A ar;
  BatchNorm<double> bn(ar, "bn", 3);
  ar.finalize();
  ar.initialise(4);
  ar.value(bn.gamma)[1] = 1.7;
  ar.value(bn.beta)[2] = -0.4;
  Context<> ctx(1, true);
  auto x = randn(5 * 3, 40), w = randn(5 * 3, 41);
  std::vector<double> y(15), dx(15);
  BatchNorm<double>::Cache c;
  auto loss = [&] {
    bn.forward(ctx, ar, {x.data(), 5, 3}, {y.data(), 5, 3}, c);
    return dot(y.data(), w);
  };
  loss();
  double m = 0;
  for (int i = 0; i < 5; ++i) m += y[i * 3 + 1];
  CHECK(m / 5 == doctest::Approx(0.0).epsilon(1e-12));  // beta of column 1 is 0
  // Running mean moved 10% of the way to the batch mean.
  double bm = 0;
  for (int i = 0; i < 5; ++i) bm += x[i * 3];
  CHECK(ar.value(bn.running_mean)[0] == doctest::Approx(0.1 * bm / 5));
  for (bool training : {true, false}) {
    CAPTURE(training);
    ctx.training = training;
    auto probes = gradcheck::arena_probes(ar, [&] {
      loss();
      std::fill(dx.begin(), dx.end(), 0.0);
      bn.backward(ctx, ar, {w.data(), 5, 3}, {dx.data(), 5, 3}, c);
    });
    probes.push_back({"x", x.data(), dx});
    CHECK(gradcheck::check(probes, loss) >= 18);
  }
}

TEST_CASE("batch norm: the host's row walk equals a plain per-column computation, across column blocks") {
  // 70 columns: two of ops<cpu>'s 64-column blocks, the second partial; X and Y alias.
  // 37 rows run the blocks on one thread, 1600 share them among OpenMP threads. The
  // reference walks one column at a time, in double, as nn/batch_norm.hpp's equations say.
  // (The cuda kernels are checked against ops<cpu> by emulated.batchnorm.)
  auto run = [](auto zero, double tol, int N) {
    using T = decltype(zero);
    const int C = 70;
    Rng rng(9);
    std::vector<T> X(size_t(N) * C), dY(X.size()), g(C), be(C), rm(C), rv(C);
    rng.normal(X.data(), X.size());
    rng.normal(dY.data(), dY.size());
    rng.normal(g.data(), C);
    rng.normal(be.data(), C);
    rng.normal(rm.data(), C);
    rng.uniform(rv.data(), C);
    for (auto& v : rv) v += T(0.5);
    for (bool training : {true, false}) {
      CAPTURE(training);
      // The host's walk, X and Y the same buffer.
      std::vector<T> Y = X, xh(X.size()), is(C), rm1 = rm, rv1 = rv, dg(C, T(1)), db(C, T(2)), dX(X.size(), T(3));
      ops<cpu>::batchnorm_forward(N, C, Y.data(), g.data(), be.data(), rm1.data(), rv1.data(), training, 0.1, 1e-5,
                                  xh.data(), is.data(), Y.data());
      ops<cpu>::batchnorm_backward(N, C, xh.data(), is.data(), g.data(), dY.data(), training, dg.data(), db.data(),
                                   dX.data());
      // The reference, column by column in double.
      std::vector<double> Y2(X.size()), xh2(X.size()), is2(C), rm2(C), rv2(C), dg2(C), db2(C), dX2(X.size());
      for (int c = 0; c < C; ++c) {
        auto at = [&](const std::vector<T>& v, int i) { return double(v[size_t(i) * C + c]); };
        double mean = double(rm[c]), var = double(rv[c]);
        rm2[c] = double(rm[c]), rv2[c] = double(rv[c]);
        if (training) {
          double s = 0, ss = 0;
          for (int i = 0; i < N; ++i) s += at(X, i);
          mean = s / N;
          for (int i = 0; i < N; ++i) ss += (at(X, i) - mean) * (at(X, i) - mean);
          var = ss / N;
          rm2[c] = 0.9 * double(rm[c]) + 0.1 * mean;
          rv2[c] = 0.9 * double(rv[c]) + 0.1 * ss / (N - 1);
        }
        is2[c] = 1 / std::sqrt(var + 1e-5);
        double sd = 0, sdx = 0;
        for (int i = 0; i < N; ++i) {
          const size_t o = size_t(i) * C + c;
          xh2[o] = (at(X, i) - mean) * is2[c];
          Y2[o] = double(g[c]) * xh2[o] + double(be[c]);
          sd += at(dY, i);
          sdx += at(dY, i) * xh2[o];
        }
        dg2[c] = 1 + sdx, db2[c] = 2 + sd;
        const double k = double(g[c]) * is2[c];
        for (int i = 0; i < N; ++i) {
          const size_t o = size_t(i) * C + c;
          dX2[o] = 3 + (training ? k * (at(dY, i) - sd / N - xh2[o] * sdx / N) : k * at(dY, i));
        }
      }
      auto same = [&](const char* what, const std::vector<T>& a, const std::vector<double>& b) {
        CAPTURE(what);
        double num = 0, den = 1e-30;
        for (size_t i = 0; i < a.size(); ++i) {
          num = std::max(num, std::abs(double(a[i]) - b[i]));
          den = std::max(den, std::abs(b[i]));
        }
        CHECK(num / den < tol);
      };
      same("Y", Y, Y2);
      same("xhat", xh, xh2);
      same("inv_std", is, is2);
      same("running mean", rm1, rm2);
      same("running var", rv1, rv2);
      same("dgamma", dg, dg2);
      same("dbeta", db, db2);
      same("dX", dX, dX2);
      // Training normalises every column: mean 0 (beta = 0 aside), the last block included.
      if (training) {
        double m = 0;
        for (int i = 0; i < N; ++i) m += double(xh[size_t(i) * C + C - 1]);
        CHECK(std::abs(m / N) < 1e3 * tol);
      }
    }
  };
  for (int N : {37, 1600}) {
    CAPTURE(N);
    run(0.0f, 1e-5, N);
    run(0.0, 1e-12, N);
  }
}

TEST_CASE("gemm_few_rows (no packing) equals a plain triple loop, every tail shape, float and double") {
  auto check = [](auto zero, int M, int N, int K, bool accumulate) {
    using T = decltype(zero);
    Rng rng(uint64_t(M * 1000003 + N * 1009 + K));
    const int lda = K + 3, ldb = N + 5, ldc = N + 2;  // strides wider than the rows
    std::vector<T> A(size_t(M) * lda), Bt(size_t(K) * ldb), C(size_t(M) * ldc);
    rng.normal(A.data(), A.size());
    rng.normal(Bt.data(), Bt.size());
    rng.normal(C.data(), C.size());
    std::vector<T> want = C;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double s = accumulate ? double(C[size_t(m) * ldc + n]) : 0.0;
        for (int k = 0; k < K; ++k) s += double(A[size_t(m) * lda + k]) * double(Bt[size_t(k) * ldb + n]);
        want[size_t(m) * ldc + n] = T(s);
      }
    ops<cpu>::gemm_few_rows(M, N, K, A.data(), lda, Bt.data(), ldb, C.data(), ldc, accumulate);
    const double tol = sizeof(T) == 4 ? 2e-4 * std::sqrt(double(K)) : 1e-11 * K;
    for (size_t i = 0; i < C.size(); ++i) REQUIRE(double(C[i]) == doctest::Approx(double(want[i])).epsilon(tol).scale(1));
  };
  for (int M : {1, 3, 7, 8, 9, 17, 32, 64, 65, 100})
    for (int N : {1, 15, 16, 17, 33, 48, 100, 384})
      for (int K : {1, 5, 64, 129}) {
        check(0.0f, M, N, K, (M + N + K) % 2 == 0);
        check(0.0, M, N, K, (M + N + K) % 2 == 1);
      }
  // Padding columns of C beyond N are never touched.
  std::vector<float> A(4, 1.f), Bt(4, 1.f), C(3 * 2, -7.f);
  ops<cpu>::gemm_few_rows(2, 2, 2, A.data(), 2, Bt.data(), 2, C.data(), 3, false);
  CHECK(C == std::vector<float>{2.f, 2.f, -7.f, 2.f, 2.f, -7.f});
}

TEST_CASE("vocab loss: gathered or identity rows, summed per sentence, gradients, chunked evaluation") {
  const int n = 7, F = 3, V = 6, nb = 3;
  OutputRows gathered;  // rows 4, 0, 6, 2 of X, then a filler (no target)
  gathered.identity = false;
  gathered.source = {4, 0, 6, 2, 0};
  gathered.item = {0, 1, 1, 2, 0};
  gathered.target = {2, 5, 4, 3, -1};
  OutputRows identity;  // every row of X, one without a target
  identity.item = {0, 0, 1, 1, 1, 2, 2};
  identity.target = {1, 0, 5, -1, 2, 3, 4};
  for (const OutputRows* rows : {&gathered, &identity}) {
    CAPTURE(rows->identity);
    A ar;
    Linear<double> out(ar, "out", F, V);
    ar.finalize();
    ar.initialise(3);
    Context<> ctx(5);
    auto x = randn(size_t(n) * F, 6), w = randn(nb, 7);
    std::vector<double> rec(nb), dx(size_t(n) * F);
    VocabLoss<double>::Cache c;
    auto loss = [&] {
      VocabLoss<double>::forward(ctx, ar, out, *rows, {x.data(), n, F}, {rec.data(), nb, 1}, c);
      return dot(rec.data(), w);
    };
    loss();
    // rec against a direct computation: logsumexp(logits) - logits[target] per row with a target
    std::vector<double> expect(nb, 0.0);
    for (int k = 0; k < rows->count(); ++k) {
      if (rows->target[k] < 0) continue;
      const double* xr = x.data() + size_t(rows->identity ? k : rows->source[k]) * F;
      std::vector<double> z(V);
      double m = -1e300, s = 0;
      for (int v = 0; v < V; ++v) {
        z[v] = ar.value(out.b)[v];
        for (int f = 0; f < F; ++f) z[v] += ar.value(out.W)[v * F + f] * xr[f];
        m = std::max(m, z[v]);
      }
      for (int v = 0; v < V; ++v) s += std::exp(z[v] - m);
      expect[rows->item[k]] += m + std::log(s) - z[rows->target[k]];
    }
    for (int i = 0; i < nb; ++i) CHECK(rec[i] == doctest::Approx(expect[i]).epsilon(1e-12));
    // evaluation in chunks of 2 rows gives the same sums
    std::vector<double> rec2(nb, -1.0);
    VocabLoss<double>::Cache c2;
    VocabLoss<double>::loss_only(ctx, ar, out, *rows, {x.data(), n, F}, {rec2.data(), nb, 1}, c2, nullptr, 2);
    for (int i = 0; i < nb; ++i) CHECK(rec2[i] == doctest::Approx(rec[i]).epsilon(1e-12));
    auto probes = gradcheck::arena_probes(ar, [&] {
      loss();
      std::fill(dx.begin(), dx.end(), 0.5);  // backward accumulates into dX
      VocabLoss<double>::backward(ctx, ar, out, {x.data(), n, F}, {w.data(), nb, 1}, {dx.data(), n, F}, c);
      for (double& g : dx) g -= 0.5;
    });
    probes.push_back({"x", x.data(), dx});
    CHECK(gradcheck::check(probes, loss) > 20);
    // rows no output row reads get no gradient (gathered: rows 1, 3 and 5)
    if (!rows->identity)
      for (int r : {1, 3, 5})
        for (int f = 0; f < F; ++f) CHECK(dx[size_t(r) * F + f] == 0.0);
  }
  std::vector<double> x(size_t(n) * F), rec(nb);
  A ar;
  Linear<double> out(ar, "out", F, V);
  ar.finalize();
  Context<> ctx(5);
  VocabLoss<double>::Cache c;
  OutputRows short_rows = identity;
  short_rows.item.pop_back();
  short_rows.target.pop_back();
  CHECK_THROWS_WITH_AS(VocabLoss<double>::forward(ctx, ar, out, short_rows, {x.data(), n, F}, {rec.data(), nb, 1}, c),
                       doctest::Contains("7 head rows for 6 output rows"), Error);
  const std::vector<int32_t> too_few = {0, 1, 2};
  CHECK_THROWS_WITH_AS(VocabLoss<double>::forward(ctx, ar, out, identity, {x.data(), n, F}, {rec.data(), nb, 1}, c, &too_few),
                       doctest::Contains("3 sources for 7 output rows"), Error);
}

TEST_CASE("softmax cross-entropy: the bias added in the softmax and summed in its backward equals the separate passes") {
  // VocabLoss lets ops<cpu>::softmax_xent add the bias and softmax_xent_backward sum its
  // gradient (column blocks across threads): the same numbers, bit for bit, as add_row_bias
  // before the softmax and col_sum_acc after the backward. The shape: three column blocks,
  // the last a partial one, and more values than the threading threshold.
  using C = ops<cpu>;
  const int V = 2 * C::softmax_column_block + 276;
  const int rows = int(C::softmax_parallel_values / size_t(V)) + 50;
  REQUIRE(size_t(rows) * V > C::softmax_parallel_values);
  const auto x64 = randn(size_t(rows) * V, 11), b64 = randn(V, 12), d64 = randn(rows, 13);
  const std::vector<float> logits(x64.begin(), x64.end()), bias(b64.begin(), b64.end()), dloss(d64.begin(), d64.end());
  std::vector<int32_t> targets(rows);
  for (int i = 0; i < rows; ++i) targets[i] = i % 17 == 5 ? -1 : (i * 613) % V;  // some padding rows
  targets[0] = V - 1;

  std::vector<float> fused = logits, fused_loss(rows), fused_db(V, 0.25f);
  C::softmax_xent(fused.data(), rows, V, targets.data(), fused_loss.data(), true, bias.data());
  std::vector<float> apart = logits, apart_loss(rows), apart_db(V, 0.25f);
  C::add_row_bias(apart.data(), rows, V, bias.data());
  C::softmax_xent(apart.data(), rows, V, targets.data(), apart_loss.data());
  CHECK(fused_loss == apart_loss);
  CHECK(fused == apart);
  CHECK(fused_loss[5] == 0.0f);
  const std::vector<float> probs = fused;

  C::softmax_xent_backward(fused.data(), rows, V, targets.data(), dloss.data(), fused_db.data());
  C::softmax_xent_backward(apart.data(), rows, V, targets.data(), dloss.data());
  C::col_sum_acc(apart.data(), rows, V, apart_db.data());
  CHECK(fused == apart);
  CHECK(fused_db == apart_db);
  // against a plain computation: d logits = dloss (p - onehot), zero on padding rows, and
  // db = 0.25 + their column sums
  double worst = 0;
  for (int i = 0; i < rows; ++i)
    for (int k = 0; k < V; ++k) {
      const size_t at = size_t(i) * V + k;
      const double want = targets[i] < 0 ? 0.0 : double(dloss[i]) * (probs[at] - (k == targets[i] ? 1.0 : 0.0));
      worst = std::max(worst, std::abs(double(fused[at]) - want));
    }
  CHECK(worst < 1e-6);
  double worst_db = 0;
  for (int k = 0; k < V; ++k) {
    double s = 0.25;
    for (int i = 0; i < rows; ++i) s += fused[size_t(i) * V + k];
    worst_db = std::max(worst_db, std::abs(s - double(fused_db[k])));
  }
  CHECK(worst_db < 1e-4);
}
