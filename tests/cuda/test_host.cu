// The cuda backend without a GPU: the kernel bodies of backend/kernels.hpp that ops<cpu>
// does not run itself (it has SIMD versions of GRU gates, Adam, softmax backward, column
// sums, transpose and dropout) run in a host loop over their index space and must give
// what ops<cpu> gives on the same inputs (the other bodies are ops<cpu>'s own code and are
// covered by the cpu suite);
// the generator evaluated per element (philox_uniform / philox_normal, what the kernels
// call) must equal Rng's sequential draws bit for bit; and asking for a device where there
// is none gives the clear error the command line prints.
#include "common.cuh"

using namespace couplevae;
using cvtest::random_vec;
using cvtest::rel_err;

namespace {

template <class F>
void host_loop(size_t n, const F& f) {
  for (size_t i = 0; i < n; ++i) f(i);
}
using C = ops<cpu>;

}  // namespace

TEST_SUITE("host") {
  TEST_CASE("per-element generator equals Rng's draws bit for bit") {
    for (uint64_t pos : {0ull, 5ull, (1ull << 32) + 3}) {
      Rng r(987654321ull, pos);
      std::vector<float> u(37), n(37);
      std::vector<double> nd(23);
      r.uniform(u.data(), u.size());
      const uint64_t p1 = r.position;
      r.normal(n.data(), n.size());
      const uint64_t p2 = r.position;
      r.normal(nd.data(), nd.size());
      for (size_t i = 0; i < u.size(); ++i) CHECK(u[i] == philox_uniform<float>(987654321ull, pos, i));
      for (size_t i = 0; i < n.size(); ++i) CHECK(n[i] == philox_normal<float>(987654321ull, p1, i));
      for (size_t i = 0; i < nd.size(); ++i) CHECK(nd[i] == philox_normal<double>(987654321ull, p2, i));
    }
  }

  TEST_CASE("GRU gate bodies equal ops<cpu>") {
    const int a = 5, H = 7;
    const auto gx = random_vec(a * 3 * H, 1, -2, 2), gh = random_vec(a * 3 * H, 2, -2, 2), h = random_vec(a * H, 3);
    const auto bh = random_vec(3 * H, 5);
    std::vector<float> r(a * H), z(a * H), n(a * H), ghn(a * H), hn(a * H);
    auto r2 = r, z2 = z, n2 = n, ghn2 = ghn, hn2 = hn;
    C::gru_gates_forward(a, H, gx.data(), gh.data(), bh.data(), h.data(), r.data(), z.data(), n.data(), ghn.data(),
                         hn.data());
    host_loop(size_t(a) * H, kernels::GruGatesForward<float>{H, gx.data(), gh.data(), bh.data(), h.data(), nullptr, r2.data(),
                                                            z2.data(), n2.data(), ghn2.data(), hn2.data()});
    CHECK(rel_err(r2, r) < 1e-6);
    CHECK(rel_err(z2, z) < 1e-6);
    CHECK(rel_err(n2, n) < 1e-6);
    CHECK(rel_err(ghn2, ghn) == 0);
    CHECK(rel_err(hn2, hn) < 1e-6);

    const auto dh0 = random_vec(a * H, 4), ds = random_vec(a * (H + 3), 6);
    for (const float* dsp : {static_cast<const float*>(nullptr), ds.data()}) {  // without and with dstates
      auto dh = dh0, dh2 = dh0;
      std::vector<float> dgx(a * 3 * H, 9.f), dgh(a * 3 * H, 9.f), dgx2 = dgx, dgh2 = dgh;
      C::gru_gates_backward(a, H, r.data(), z.data(), n.data(), ghn.data(), h.data(), dsp, H + 3, dh.data(), dgx.data(),
                            dgh.data());
      host_loop(size_t(a) * H, kernels::GruGatesBackward<float>{H, r.data(), z.data(), n.data(), ghn.data(), h.data(),
                                                               dsp, H + 3, dh2.data(), dgx2.data(), dgh2.data()});
      CHECK(rel_err(dh2, dh) == 0);
      CHECK(rel_err(dgx2, dgx) == 0);
      CHECK(rel_err(dgh2, dgh) == 0);
    }
  }

  TEST_CASE("Adam, dropout, column sums, transpose and softmax backward bodies equal ops<cpu>") {
    const size_t n = 50;
    const auto g = random_vec(n, 41);
    auto x = random_vec(n, 42), m = random_vec(n, 43), v = random_vec(n, 44, 0, 1);
    auto x2 = x, m2 = m, v2 = v;
    // The third update, its gradients clipped by 0.7.
    kernels::AdamClock clock;
    clock.t = 2;
    const kernels::UpdateGate gate{0.7, 1};
    host_loop(1, kernels::AdamTick{&clock, &gate, 1e-3, 0.9, 0.999});
    CHECK(clock.t == 3);
    CHECK(clock.step == doctest::Approx(1e-3 / (1 - std::pow(0.9, 3))).epsilon(1e-15));
    C::adam(n, x.data(), g.data(), m.data(), v.data(), &clock, 0.9, 0.999, 1e-8);
    host_loop(n, kernels::AdamStep<float>{x2.data(), g.data(), m2.data(), v2.data(), &clock, 0.9f, 0.999f, 1e-8f});
    CHECK(rel_err(x2, x) < 1e-7);
    CHECK(rel_err(m2, m) == 0);
    CHECK(rel_err(v2, v) == 0);
    // A closed gate skips the update, t included.
    const kernels::UpdateGate shut{1.0, 0};
    host_loop(1, kernels::AdamTick{&clock, &shut, 1e-3, 0.9, 0.999});
    CHECK(clock.t == 3);
    const auto x3 = x2;
    host_loop(n, kernels::AdamStep<float>{x2.data(), g.data(), m2.data(), v2.data(), &clock, 0.9f, 0.999f, 1e-8f});
    CHECK(rel_err(x3, x2) == 0);

    Rng r(77, 9);
    std::vector<float> mask(n), mask2(n);
    C::dropout_mask(r, n, 0.3f, mask.data());
    host_loop(n, kernels::DropoutMask<float>{77, 9, 0.3f, 1.f / 0.7f, mask2.data()});
    CHECK(rel_err(mask2, mask) == 0);
    CHECK(r.position == 9 + Rng::blocks_for(n));

    const int rows = 6, cols = 11;
    const auto dY = random_vec(rows * cols, 45);
    std::vector<float> t(rows * cols), t2(rows * cols);
    C::transpose(dY.data(), rows, cols, t.data());
    host_loop(size_t(rows) * cols, kernels::Transpose<float>{dY.data(), rows, cols, t2.data()});
    CHECK(rel_err(t2, t) == 0);

    const int V = 13;
    auto logits = random_vec(rows * V, 47, -3, 3);
    const std::vector<int32_t> targets = {0, 12, 5, 5, 7, 1};
    std::vector<float> loss(rows);
    C::softmax_xent(logits.data(), rows, V, targets.data(), loss.data());
    const auto dloss = random_vec(rows, 48);
    auto p2 = logits;
    C::softmax_xent_backward(logits.data(), rows, V, targets.data(), dloss.data());
    host_loop(size_t(rows) * V, kernels::SoftmaxXentBackward<float>{p2.data(), V, targets.data(), dloss.data()});
    CHECK(rel_err(p2, logits) < 1e-6);
  }

  TEST_CASE("the row-major to column-major GEMM mapping of ops<cuda>::gemm equals ops<cpu>::gemm") {
    // cuBLAS's contract, written out: C (m x n, column-major, ldc) = alpha op1(X) op2(Y) + beta C
    // with X (ld1) and Y (ld2) column-major; op = transpose when asked.
    auto colmajor_gemm = [](bool t1, bool t2, int m, int n, int k, float alpha, const float* X, int ld1,
                            const float* Y, int ld2, float beta, float* C, int ldc) {
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double s = 0;
          for (int p = 0; p < k; ++p) {
            const double x = t1 ? X[p + size_t(i) * ld1] : X[i + size_t(p) * ld1];
            const double y = t2 ? Y[j + size_t(p) * ld2] : Y[p + size_t(j) * ld2];
            s += x * y;
          }
          C[i + size_t(j) * ldc] = float(alpha * s + beta * C[i + size_t(j) * ldc]);
        }
    };
    const int M = 7, N = 5, K = 4, pad = 2;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.f, 1.f}) {
          const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
          const auto A = random_vec(size_t(ta ? K : M) * lda, 61), B = random_vec(size_t(tb ? N : K) * ldb, 62);
          auto expect = random_vec(size_t(M) * ldc, 63), got = expect;
          C::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, beta, expect.data(), ldc);
          const auto g = cuda_rt::column_major_gemm(ta, tb, M, N, K);
          // ops<cuda>::gemm passes (B, ldb) first and (A, lda) second, C with ldc.
          colmajor_gemm(g.trans_first, g.trans_second, g.m, g.n, g.k, 0.5f, B.data(), ldb, A.data(), lda, beta,
                        got.data(), ldc);
          CHECK(rel_err(got, expect) < 1e-6);
        }
  }

  TEST_CASE("require_device: an error naming the problem exactly when device_count is 0") {
    if (cuda_rt::device_count() == 0) {
      CHECK_THROWS_WITH_AS(cuda_rt::require_device(), doctest::Contains("needs a CUDA device"), Error);
      CHECK_THROWS_WITH_AS(cuda_rt::require_device(), doctest::Contains("--backend cpu"), Error);
    } else {
      CHECK_NOTHROW(cuda_rt::require_device());
    }
  }

  TEST_CASE("COUPLEVAE_CUDA_RECURRENCE: the three modes, and an error naming the bad value") {
    const auto f = cuda_rt::recurrence_mode("fused"), c = cuda_rt::recurrence_mode("composed"),
               p = cuda_rt::recurrence_mode("persistent");
    CHECK((f.fused && !f.persistent));
    CHECK((!c.fused && !c.persistent));
    CHECK((p.fused && p.persistent));
    CHECK_THROWS_WITH_AS(cuda_rt::recurrence_mode("Fused"), doctest::Contains("got 'Fused'"), Error);
    CHECK_THROWS_WITH_AS(cuda_rt::recurrence_mode(""), doctest::Contains("expected fused, composed or persistent"),
                         Error);
  }

  TEST_CASE("COUPLEVAE_CUDA_ROWS_MAX: a whole number of rows, and an error naming the bad value") {
    CHECK(cuda_rt::rows_max_setting("0") == 0);
    CHECK(cuda_rt::rows_max_setting("512") == 512);
    CHECK(cuda_rt::rows_max_setting("1000000") == 1000000);
    for (const char* bad : {"", "-1", "64k", "1e3", " 64", "1000001", "99999999999999999999"})
      CHECK_THROWS_WITH_AS(cuda_rt::rows_max_setting(bad), doctest::Contains(("got '" + std::string(bad) + "'").c_str()),
                           Error);
  }
}
