// The cuda backend on a GPU (ctest cuda.device; skipped without one):
//   1. every ops<cuda> entry against ops<cpu> on the same random inputs (GEMM in all four
//      transpose combinations with strides and beta, reductions, scatters with repeated
//      ids, the generator's draws);
//   2. every model of the registry (16 types; beta 0.8 / 1.2 differ only in a setting),
//      cpu and cuda built from the same seed: identical initial weights, and after one
//      training forward + backward (dropout on, same noise: vMF's rejection sampler draws
//      from the same per-row streams) the loss parts and every gradient tensor agree within
//      float tolerance; importance weights too;
//   3. whole training steps replayed from CUDA Graphs on bucketed batches against the same
//      steps run eagerly and on cpu (several buckets, patched arguments, a fallback);
//   3b. SA-VAE's forward and n2n backward, and one aggressive Lagging-VAE step;
//   4. 200 training steps of couple-vae (PTB when ../shared/data/ptb is there, else the
//      toy corpus) with Adam and clipping on both backends: the losses track.
#include "common.cuh"

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

using namespace couplevae;
using cvtest::random_vec;
using cvtest::rel_err;
using cvtest::sentences;

namespace {

using C = ops<cpu>;
using G = ops<cuda>;

template <class T>
struct Dev {
  Buffer<T, cuda> b;
  explicit Dev(const std::vector<T>& h) { b.from_host(h.data(), h.size()); }
  T* p() { return b.data(); }
  std::vector<T> host() const { return b.to_host(); }
};

Config small_config(int vocab) {
  Config c = Config::preset("ptb");
  c.vocab_size = vocab;
  c.embed = 16;
  c.hidden = 12;
  c.latent = 6;
  c.kl_start = 0;
  c.kl_anneal_steps = 10;
  c.dropout = 0.2;
  c.cnn_channels = 24;
  return c;
}

// Every gradient tensor of a and b, name by name: max |gb - ga| over the tensor, relative to
// max |ga| of that tensor, or to 1e-2 of the largest gradient of the model when the tensor's
// own is smaller (a bias in front of BatchNorm, or a sum over the batch that cancels, is
// float noise around zero on both backends, and relative to itself noise is O(1)).
template <class MA, class MB>
void check_grads(MA& a, MB& b, double tol) {
  std::vector<std::vector<float>> ga, gb;
  std::vector<std::string> names;
  a.arena().visit([&](const ParamInfo& p, float*, float* g) {
    ga.emplace_back(g, g + p.size);
    names.push_back(p.name);
  });
  const auto all = b.arena().grads().to_host();
  b.arena().visit([&](const ParamInfo& p, float*, float*) {
    gb.emplace_back(all.begin() + long(p.offset), all.begin() + long(p.offset + p.size));
  });
  REQUIRE(ga.size() == gb.size());
  auto max_abs = [](const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, double(std::abs(x)));
    return m;
  };
  double largest = 0;
  for (const auto& g : ga) largest = std::max(largest, max_abs(g));
  for (size_t i = 0; i < ga.size(); ++i) {
    double diff = 0;
    for (size_t k = 0; k < ga[i].size(); ++k) {
      const double d = std::abs(double(gb[i][k]) - double(ga[i][k]));
      if (!(d <= diff)) diff = d;  // a NaN sticks
    }
    const double scale = std::max(max_abs(ga[i]), 1e-2 * largest);
    INFO("gradient of " << names[i] << ": max |cpu| " << max_abs(ga[i]) << ", max |cuda| " << max_abs(gb[i])
                        << ", max |diff| " << diff << ", largest gradient of the model " << largest);
    CHECK(std::isfinite(diff));
    CHECK(diff <= tol * scale);
  }
}

// cpu and cuda models built from the same seed: identical initial weights; after one
// training forward + backward on the same batch and noise, the loss parts and every gradient
// agree within float tolerance; importance weights too.
template <class M>
void check_model_parity(const Config& cfg, const std::vector<std::vector<int32_t>>& sents) {
  using Mc = with_backend_t<M, cuda>;
  M a(cfg, 2024);
  Mc b(cfg, 2024);
  CHECK(rel_err(b.arena().values().to_host(), a.arena().values().to_host()) == 0);
  const Batch batch = make_batch(sents, cfg.vocab_size);
  Context<cpu> ca(99, true);
  Context<cuda> cb(99, true);
  const Losses la = a.forward(ca, batch, 7);
  const Losses lb = b.forward(cb, batch, 7);
  CHECK(lb.loss == doctest::Approx(la.loss).epsilon(1e-5));
  CHECK(lb.rec == doctest::Approx(la.rec).epsilon(1e-5));
  CHECK(lb.kl == doctest::Approx(la.kl).epsilon(1e-4));
  CHECK(lb.rec_c == doctest::Approx(la.rec_c).epsilon(1e-5));
  CHECK(lb.couple == doctest::Approx(la.couple).epsilon(1e-4));
  CHECK(ca.rng.position == cb.rng.position);
  a.zero_grad();
  b.zero_grad();
  a.backward(ca);
  b.backward(cb);
  check_grads(a, b, 1e-4);
  if constexpr (M::has_latent) {
    Context<cpu> ea(5, false);
    Context<cuda> eb(5, false);
    const auto ia = a.importance_weights(ea, batch, 7), ib = b.importance_weights(eb, batch, 7);
    for (size_t i = 0; i < ia.log_weight.size(); ++i)
      CHECK(ib.log_weight[i] == doctest::Approx(ia.log_weight[i]).epsilon(1e-4));
  }
}

}  // namespace

TEST_SUITE("device") {
  TEST_CASE("GEMM: all transposes, strides, beta 0 and 1") {
    const int M = 37, N = 45, K = 29, pad = 3;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.f, 1.f}) {
          const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
          const auto A = random_vec(size_t(ta ? K : M) * lda, 1), B = random_vec(size_t(tb ? N : K) * ldb, 2);
          auto Cc = random_vec(size_t(M) * ldc, 3);
          Dev<float> dA(A), dB(B), dC(Cc);
          C::gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, Cc.data(), ldc);
          G::gemm(ta, tb, M, N, K, 0.7f, dA.p(), lda, dB.p(), ldb, beta, dC.p(), ldc);
          CHECK(rel_err(dC.host(), Cc) < 1e-5);
        }
    // gemm_few_rows: small and recurrence-sized shapes, with strides, accumulating or not.
    for (auto [M, N, K] : {std::array{7, 30, 20}, std::array{32, 32, 32}, std::array{70, 100, 45}, std::array{33, 768, 256},
                           std::array{64, 256, 768}})
      for (bool acc : {true, false}) {
        INFO("gemm_few_rows " << M << "x" << N << "x" << K << (acc ? " accumulate" : ""));
        const int lda = K + 3, ldb = N + 1, ldc = N + 2;
        const auto A = random_vec(size_t(M) * lda, 4), Bt = random_vec(size_t(K) * ldb, 5);
        auto Cc = random_vec(size_t(M) * ldc, 6);
        Dev<float> dA(A), dB(Bt), dC(Cc);
        C::gemm_few_rows(M, N, K, A.data(), lda, Bt.data(), ldb, Cc.data(), ldc, acc);
        G::gemm_few_rows(M, N, K, dA.p(), lda, dB.p(), ldb, dC.p(), ldc, acc);
        CHECK(rel_err(dC.host(), Cc) < 1e-5);
      }
  }

  TEST_CASE("the fused GRU step equals the composed one (previous states, product, gates)") {
    const bool fused_was = cuda_rt::runtime().fused_recurrence;
    cuda_rt::runtime().fused_recurrence = true;
    // a rows at step t, the first ap of which continue from h_src (the rest start from 0).
    for (auto [a, ap, H] : {std::array{5, 5, 12}, std::array{40, 33, 37}, std::array{64, 0, 128}, std::array{9, 4, 256},
                               std::array{33, 20, 300}}) {
      INFO("a " << a << ", ap " << ap << ", H " << H);
      const int G3 = 3 * H;
      const auto src = random_vec(size_t(std::max(ap, 1)) * H, 40), gx = random_vec(size_t(a) * G3, 41, -2, 2);
      const auto wt = random_vec(size_t(H) * G3, 42, -0.3, 0.3), bh = random_vec(G3, 43);
      // cpu, composed as nn/gru.hpp does without the fused op
      std::vector<float> hp(size_t(a) * H, 0.f), gh(size_t(a) * G3), r(hp.size()), z(hp.size()), nv(hp.size()),
          ghn(hp.size()), hn(hp.size());
      std::copy(src.begin(), src.begin() + long(size_t(ap) * H), hp.begin());
      C::gemm_few_rows(a, G3, H, hp.data(), H, wt.data(), G3, gh.data(), G3, false);
      C::gru_gates_forward(a, H, gx.data(), gh.data(), bh.data(), hp.data(), r.data(), z.data(), nv.data(), ghn.data(),
                           hn.data());
      Dev<float> dsrc(src), dgx(gx), dwt(wt), dbh(bh);
      const std::vector<float> poison(hp.size(), NAN);
      Dev<float> dhp(poison), dr(poison), dz(poison), dn(poison), dghn(poison), dhn(poison);
      REQUIRE(G::gru_step(GruFwdStep<float>{.a = a, .ap = ap, .H = H, .h_src = ap ? dsrc.p() : nullptr,
                                                    .gx = dgx.p(), .whh_t = dwt.p(), .bh = dbh.p(), .hp = dhp.p(),
                                                    .r = dr.p(), .z = dz.p(), .n = dn.p(), .ghn = dghn.p(),
                                                    .h_new = dhn.p()}));
      CHECK(rel_err(dhp.host(), hp) == 0);
      CHECK(rel_err(dr.host(), r) < 1e-5);
      CHECK(rel_err(dz.host(), z) < 1e-5);
      CHECK(rel_err(dn.host(), nv) < 1e-5);
      CHECK(rel_err(dghn.host(), ghn) < 1e-5);
      CHECK(rel_err(dhn.host(), hn) < 1e-5);
    }
    cuda_rt::runtime().fused_recurrence = false;
    CHECK_FALSE(G::gru_step(GruFwdStep<float>{}));
    cuda_rt::runtime().fused_recurrence = fused_was;
  }

  TEST_CASE("the fused GRU backward step equals the composed one (the product before it, then the gates)") {
    cuda_rt::Runtime& rt = cuda_rt::runtime();
    const bool fused_was = rt.fused_recurrence;
    rt.fused_recurrence = true;
    // a rows at this step; the step that ran before it passes dgh_next W_hh to its first pa
    // rows, of which those from `real` on are padding (zero dgh_next, keep_next 0)
    for (auto [a, pa, real, H] : {std::array{5, 5, 5, 12}, std::array{40, 33, 33, 37}, std::array{64, 0, 0, 128},
                                  std::array{9, 4, 4, 256}, std::array{64, 64, 40, 300}, std::array{70, 64, 20, 20}}) {
      INFO("a " << a << ", pa " << pa << ", real " << real << ", H " << H);
      const int G3 = 3 * H;
      auto dgh_next = random_vec(size_t(std::max(pa, 1)) * G3, 50);
      std::fill(dgh_next.begin() + long(size_t(real) * G3), dgh_next.end(), 0.f);
      std::vector<int32_t> keep_next(size_t(std::max(pa, 1)), 0);
      std::fill(keep_next.begin(), keep_next.begin() + real, 1);
      const auto w = random_vec(size_t(G3) * H, 51, -0.3, 0.3), r = random_vec(size_t(a) * H, 52, 0, 1),
                 z = random_vec(size_t(a) * H, 53, 0, 1), nv = random_vec(size_t(a) * H, 54, -1, 1),
                 ghn = random_vec(size_t(a) * H, 55), hp = random_vec(size_t(a) * H, 56),
                 ds = random_vec(size_t(a) * H, 57), dh0 = random_vec(size_t(a) * H, 58);
      // cpu, composed as nn/gru.hpp does without the fused op
      std::vector<float> dh = dh0, dgx(size_t(a) * G3), dgh(dgx.size());
      C::gemm_few_rows(pa, H, G3, dgh_next.data(), G3, w.data(), H, dh.data(), H, true);
      C::gru_gates_backward(a, H, r.data(), z.data(), nv.data(), ghn.data(), hp.data(), ds.data(), H, dh.data(),
                            dgx.data(), dgh.data());
      Dev<float> ddn(dgh_next), dw(w), dr(r), dz(z), dnv(nv), dghn(ghn), dhp(hp), dds(ds), ddh(dh0);
      Dev<int32_t> dkeep(keep_next);
      const std::vector<float> poison(dgx.size(), NAN);
      Dev<float> ddgx(poison), ddgh(poison);
      REQUIRE(G::gru_step(GruBackStep<float>{.a = a, .pa = pa, .H = H, .ld_ds = H, .dgh_next = ddn.p(),
                                                      .w_hh = dw.p(), .r = dr.p(), .z = dz.p(), .n = dnv.p(),
                                                      .ghn = dghn.p(), .hp = dhp.p(), .ds = dds.p(), .dh = ddh.p(),
                                                      .dgx = ddgx.p(), .dgh = ddgh.p(), .keep_next = dkeep.p()}));
      CHECK(rel_err(ddh.host(), dh) < 1e-5);
      CHECK(rel_err(ddgx.host(), dgx) < 1e-5);
      CHECK(rel_err(ddgh.host(), dgh) < 1e-5);
    }
    // declined: fused steps off, or a product larger than rows_kernel_max
    const int max_was = rt.rows_kernel_max;
    const GruBackStep<float> big{.a = 9, .pa = 9}, small{.a = 1, .pa = 1};
    rt.rows_kernel_max = 8;
    CHECK_FALSE(G::gru_step(big));
    CHECK_FALSE(G::gru_step(small, &big));  // the second step of a pair counts too
    rt.rows_kernel_max = max_was;
    rt.fused_recurrence = false;
    CHECK_FALSE(G::gru_step(small));
    rt.fused_recurrence = fused_was;
  }

  TEST_CASE("element-wise, row and index kernels") {
    const int rows = 33, cols = 70;
    const size_t n = size_t(rows) * cols;
    const auto x = random_vec(n, 10, -2, 2), y0 = random_vec(n, 11);
    auto expect = y0;
    Dev<float> dx(x), dy(y0);
    auto same = [&](double tol) { CHECK(rel_err(dy.host(), expect) <= tol); };  // tol 0: bit-identical
    C::axpy(n, 0.5f, x.data(), expect.data());
    G::axpy(n, 0.5f, dx.p(), dy.p());
    same(1e-6);
    C::mul_acc(n, x.data(), x.data(), expect.data());
    G::mul_acc(n, dx.p(), dx.p(), dy.p());
    same(1e-6);
    C::tanh_forward(n, x.data(), expect.data());
    G::tanh_forward(n, dx.p(), dy.p());
    same(1e-6);
    C::tanh_backward_acc(n, x.data(), x.data(), expect.data());
    G::tanh_backward_acc(n, dx.p(), dx.p(), dy.p());
    same(1e-6);
    C::relu_forward(n, x.data(), expect.data());
    G::relu_forward(n, dx.p(), dy.p());
    same(0);
    C::relu_backward_acc(n, x.data(), x.data(), expect.data());
    G::relu_backward_acc(n, dx.p(), dx.p(), dy.p());
    same(0);
    const auto bias = random_vec(cols, 12);
    Dev<float> db(bias);
    C::add_row_bias(expect.data(), rows, cols, bias.data());
    G::add_row_bias(dy.p(), rows, cols, db.p());
    same(1e-6);
    auto cs = random_vec(cols, 13);
    Dev<float> dcs(cs);
    C::col_sum_acc(x.data(), rows, cols, cs.data());
    G::col_sum_acc(dx.p(), rows, cols, dcs.p());
    CHECK(rel_err(dcs.host(), cs) < 1e-5);
    {  // more rows than the runtime's vector of ones: the GEMM runs in pieces
      const int tall = cuda_rt::Runtime::ones_count + 1000, narrow = 3;
      const auto y = random_vec(size_t(tall) * narrow, 15);
      auto sums = random_vec(narrow, 16);
      Dev<float> dyt(y), dsums(sums);
      C::col_sum_acc(y.data(), tall, narrow, sums.data());
      G::col_sum_acc(dyt.p(), tall, narrow, dsums.p());
      CHECK(rel_err(dsums.host(), sums) < 1e-4);
    }
    C::add2d(x.data(), 5, 9, cols, expect.data() + 3, cols);
    G::add2d(dx.p(), 5, 9, cols, dy.p() + 3, cols);
    same(1e-6);
    C::copy2d(x.data(), 5, 9, cols, expect.data() + 3, cols);
    G::copy2d(dx.p(), 5, 9, cols, dy.p() + 3, cols);
    same(0);
    C::scale(expect.data(), n, 0.25f);
    G::scale(dy.p(), n, 0.25f);
    same(0);
    C::add_scalar(expect.data(), n, 0.125f);
    G::add_scalar(dy.p(), n, 0.125f);
    same(0);
    CHECK(G::sum(dx.p(), n) == doctest::Approx(C::sum(x.data(), n)).epsilon(1e-9));
    CHECK(G::sum_squares(dx.p(), n) == doctest::Approx(C::sum_squares(x.data(), n)).epsilon(1e-9));
    // The reductions of a training step accumulate into device memory.
    Dev<double> into({0.5, -1.0});
    G::sum_into(dx.p(), n, 0.25, into.p());
    G::sum_squares_into(dx.p(), n, 2.0, into.p() + 1);
    const auto sums = into.host();
    CHECK(sums[0] == doctest::Approx(0.5 + 0.25 * C::sum(x.data(), n)).epsilon(1e-9));
    CHECK(sums[1] == doctest::Approx(-1.0 + 2.0 * C::sum_squares(x.data(), n)).epsilon(1e-9));
    CHECK(G::all_finite(dx.p(), n));
    G::fill(dy.p() + 17, 1, std::numeric_limits<float>::quiet_NaN());
    CHECK_FALSE(G::all_finite(dy.p(), n));
    std::vector<float> t(n);
    Buffer<float, cuda> dt(n);
    C::transpose(x.data(), rows, cols, t.data());
    G::transpose(dx.p(), rows, cols, dt.data());
    CHECK(rel_err(dt.to_host(), t) == 0);

    // gather / scatter with repeated ids; segment sums and broadcasts.
    const int V = 11, D = 8, m = 40;
    std::vector<int32_t> ids(m);
    for (int i = 0; i < m; ++i) ids[i] = int32_t((i * 7) % V);
    const auto table = random_vec(size_t(V) * D, 14), dout = random_vec(size_t(m) * D, 15);
    Buffer<int32_t, cuda> stage;
    const int32_t* dids = backend_ids(ids, stage);
    Dev<float> dtable(table), ddout(dout);
    std::vector<float> g(size_t(m) * D);
    Buffer<float, cuda> dg(g.size());
    C::gather_rows(table.data(), D, ids.data(), m, g.data(), D);
    G::gather_rows(dtable.p(), D, dids, m, dg.data(), D);
    CHECK(rel_err(dg.to_host(), g) == 0);
    auto acc = table;
    C::scatter_add_rows(dout.data(), D, ids.data(), m, D, acc.data());
    G::scatter_add_rows(ddout.p(), D, dids, m, D, dtable.p());
    CHECK(rel_err(dtable.host(), acc) < 1e-6);
    std::vector<float> seg(V, 0.f);
    Buffer<float, cuda> dseg;
    dseg.zeros(V, 1);
    C::segment_sum(dout.data(), ids.data(), m, seg.data());
    G::segment_sum(ddout.p(), dids, m, dseg.data());
    CHECK(rel_err(dseg.to_host(), seg) < 1e-6);
    std::vector<float> br(m);
    Buffer<float, cuda> dbr(m);
    C::segment_broadcast(acc.data(), ids.data(), m, br.data());  // dtable now holds acc
    G::segment_broadcast(dtable.p(), dids, m, dbr.data());
    CHECK(rel_err(dbr.to_host(), br) < 1e-6);
  }

  TEST_CASE("generator draws, dropout, GRU gates, softmax-xent, posterior, coupling, BatchNorm, Adam") {
    const size_t n = 1001;
    Rng rc(42, 7), rg(42, 7);
    std::vector<float> u(n), nn(n), mk(n);
    Buffer<float, cuda> du(n), dn(n), dm(n);
    C::uniform(rc, u.data(), n);
    G::uniform(rg, du.data(), n);
    C::normal(rc, nn.data(), n);
    G::normal(rg, dn.data(), n);
    C::dropout_mask(rc, n, 0.2f, mk.data());
    G::dropout_mask(rg, n, 0.2f, dm.data());
    CHECK(rc.position == rg.position);
    CHECK(rel_err(du.to_host(), u) == 0);
    CHECK(rel_err(dn.to_host(), nn) < 1e-6);  // device sin/cos/log within an ulp or two
    CHECK(rel_err(dm.to_host(), mk) == 0);

    const int a = 19, H = 33;
    const auto gx = random_vec(a * 3 * H, 1, -2, 2), gh = random_vec(a * 3 * H, 2, -2, 2), h = random_vec(a * H, 3);
    std::vector<float> r(a * H), z(a * H), nv(a * H), ghn(a * H), hn(a * H);
    const auto bh = random_vec(3 * H, 30);
    Dev<float> dgx(gx), dgh(gh), dh(h), dbh(bh);
    Buffer<float, cuda> dr(a * H), dz(a * H), dnv(a * H), dghn(a * H), dhn(a * H);
    C::gru_gates_forward(a, H, gx.data(), gh.data(), bh.data(), h.data(), r.data(), z.data(), nv.data(), ghn.data(),
                         hn.data());
    G::gru_gates_forward(a, H, dgx.p(), dgh.p(), dbh.p(), dh.p(), dr.data(), dz.data(), dnv.data(), dghn.data(),
                         dhn.data());
    CHECK(rel_err(dhn.to_host(), hn) < 1e-5);
    auto dd = random_vec(a * H, 4);
    Dev<float> ddd(dd);
    std::vector<float> gxo(a * 3 * H), gho(a * 3 * H);
    Buffer<float, cuda> dgxo(gxo.size()), dgho(gho.size());
    const auto ds = random_vec(a * H, 31);
    Dev<float> dds(ds);
    C::gru_gates_backward(a, H, r.data(), z.data(), nv.data(), ghn.data(), h.data(), ds.data(), H, dd.data(),
                          gxo.data(), gho.data());
    G::gru_gates_backward(a, H, dr.data(), dz.data(), dnv.data(), dghn.data(), dh.p(), dds.p(), H, ddd.p(),
                          dgxo.data(), dgho.data());
    CHECK(rel_err(dgxo.to_host(), gxo) < 1e-5);
    CHECK(rel_err(dgho.to_host(), gho) < 1e-5);
    CHECK(rel_err(ddd.host(), dd) < 1e-5);

    // V = 13 and 10002 (PTB's size): the row cached in shared memory; the last one float more
    // than the cache holds. With the vocabulary layer's bias added in the softmax and its
    // gradient summed by the backward, and without.
    for (int V : {13, 10002, int(cuda_rt::softmax_cache_bytes / sizeof(float)) + 1})
      for (bool with_bias : {false, true}) {
        CAPTURE(V);
        CAPTURE(with_bias);
        const int rows = 29;
        auto lg = random_vec(size_t(rows) * V, 5, -6, 6);
        const auto b = random_vec(size_t(V), 10, -2, 2);
        Dev<float> dbv(b);
        const float* cb = with_bias ? b.data() : nullptr;
        const float* gb = with_bias ? dbv.p() : nullptr;
        std::vector<int32_t> tg(rows);
        for (int i = 0; i < rows; ++i) tg[i] = i == 3 ? -1 : int32_t((i * 131) % V);  // row 3: padding
        Buffer<int32_t, cuda> st;
        const int32_t* dtg = backend_ids(tg, st);
        std::vector<float> loss(rows);
        Buffer<float, cuda> dloss(rows);
        Dev<float> dlo(lg);  // loss only (evaluation)
        G::softmax_xent(dlo.p(), rows, V, dtg, dloss.data(), /*keep_probs=*/false, gb);
        CHECK(dlo.host() == lg);  // left as they were
        Dev<float> dlg(lg);
        C::softmax_xent(lg.data(), rows, V, tg.data(), loss.data(), /*keep_probs=*/true, cb);
        CHECK(loss[3] == 0.0f);
        CHECK(rel_err(dloss.to_host(), loss) < 1e-5);
        G::softmax_xent(dlg.p(), rows, V, dtg, dloss.data(), /*keep_probs=*/true, gb);
        CHECK(rel_err(dloss.to_host(), loss) < 1e-5);
        CHECK(rel_err(dlg.host(), lg) < 1e-5);
        const auto dl = random_vec(rows, 6);
        Dev<float> ddl(dl);
        std::vector<float> db(V, 0.5f);
        Dev<float> ddb(db);
        C::softmax_xent_backward(lg.data(), rows, V, tg.data(), dl.data(), with_bias ? db.data() : nullptr);
        G::softmax_xent_backward(dlg.p(), rows, V, dtg, ddl.p(), with_bias ? ddb.p() : nullptr);
        CHECK(rel_err(dlg.host(), lg) < 1e-5);
        CHECK(rel_err(ddb.host(), db) < 1e-5);  // 0.5 everywhere when there is no bias
      }

    const int rows = 40, Z = 32, D = 200;
    const auto mu = random_vec(rows * Z, 7), ls = random_vec(rows * Z, 8), eps = random_vec(rows * Z, 9);
    Dev<float> dmu(mu), dls(ls), deps(eps);
    std::vector<float> zz(rows * Z), kl(rows), lq(rows), lp(rows);
    Buffer<float, cuda> dzz(zz.size()), dkl(rows), dlq(rows), dlp(rows);
    C::gaussian_sample(rows, Z, mu.data(), ls.data(), eps.data(), zz.data(), kl.data(), lq.data(), lp.data());
    G::gaussian_sample(rows, Z, dmu.p(), dls.p(), deps.p(), dzz.data(), dkl.data(), dlq.data(), dlp.data());
    CHECK(rel_err(dzz.to_host(), zz) < 1e-6);
    CHECK(rel_err(dkl.to_host(), kl) < 1e-5);
    CHECK(rel_err(dlq.to_host(), lq) < 1e-5);
    CHECK(rel_err(dlp.to_host(), lp) < 1e-5);

    const auto h1 = random_vec(rows * D, 10), h2 = random_vec(rows * D, 11), dl = random_vec(rows, 12);
    Dev<float> dh1(h1), dh2(h2), ddl(dl);
    const double sc[7] = {12.8, 25.6, 64, 128, 256, 640, 1280};
    std::vector<float> cl(rows);
    Buffer<float, cuda> dcl(rows);
    C::coupling_forward(rows, D, h1.data(), h2.data(), sc, 7, true, cl.data());
    G::coupling_forward(rows, D, dh1.p(), dh2.p(), sc, 7, true, dcl.data());
    CHECK(rel_err(dcl.to_host(), cl) < 1e-6);
    auto gh1 = random_vec(rows * D, 13);
    Dev<float> dgh1(gh1);
    C::coupling_backward(rows, D, h1.data(), h2.data(), sc, 7, true, dl.data(), gh1.data());
    G::coupling_backward(rows, D, dh1.p(), dh2.p(), sc, 7, true, ddl.p(), dgh1.p());
    CHECK(rel_err(dgh1.host(), gh1) < 1e-6);

    // BatchNorm (batch_norm.cuh): 300 rows take the four-rows-at-a-time loops, 45 columns leave
    // threads past the last one; in place (Y over X), training and evaluation, backward too.
    const int N = 300, Cc = 45;
    const auto X = random_vec(N * Cc, 14), ga = random_vec(Cc, 15), be = random_vec(Cc, 16), gy = random_vec(N * Cc, 23);
    for (const bool training : {true, false}) {
      CAPTURE(training);
      auto Y = X, rm = random_vec(Cc, 17), rv = random_vec(Cc, 18, 0.5, 2), dx = random_vec(N * Cc, 24);
      std::vector<float> xh(N * Cc), is(Cc), dg(Cc, 1.0f), db(Cc, 2.0f);
      Dev<float> dYX(Y), dga(ga), dbe(be), drm(rm), drv(rv), dgy(gy), ddx(dx), ddg(dg), ddb(db);
      Buffer<float, cuda> dxh(xh.size()), dis(Cc);
      C::batchnorm_forward(N, Cc, Y.data(), ga.data(), be.data(), rm.data(), rv.data(), training, 0.1, 1e-5, xh.data(),
                           is.data(), Y.data());
      G::batchnorm_forward(N, Cc, dYX.p(), dga.p(), dbe.p(), drm.p(), drv.p(), training, 0.1, 1e-5, dxh.data(),
                           dis.data(), dYX.p());
      CHECK(rel_err(dYX.host(), Y) < 1e-5);
      CHECK(rel_err(dxh.to_host(), xh) < 1e-5);
      CHECK(rel_err(drm.host(), rm) < 1e-5);
      CHECK(rel_err(drv.host(), rv) < 1e-5);
      C::batchnorm_backward(N, Cc, xh.data(), is.data(), ga.data(), gy.data(), training, dg.data(), db.data(), dx.data());
      G::batchnorm_backward(N, Cc, dxh.data(), dis.data(), dga.p(), dgy.p(), training, ddg.p(), ddb.p(), ddx.p());
      CHECK(rel_err(ddg.host(), dg) < 1e-5);
      CHECK(rel_err(ddb.host(), db) < 1e-5);
      CHECK(rel_err(ddx.host(), dx) < 1e-5);
    }

    const size_t na = 5000;
    const auto gg = random_vec(na, 19);
    auto x = random_vec(na, 20), m = random_vec(na, 21), v = random_vec(na, 22, 0, 1);
    Dev<float> dgg(gg), dxx(x), dmm(m), dvv(v);
    kernels::AdamClock clock;
    clock.t = 3;
    clock.step = 1e-3 / 0.271;
    clock.inv_sqrt_c2 = 1 / std::sqrt(0.003);
    clock.grad_scale = 0.6;  // clipped
    clock.apply = 1;
    Dev<kernels::AdamClock> dclock({clock});
    C::adam(na, x.data(), gg.data(), m.data(), v.data(), &clock, 0.9, 0.999, 1e-8);
    G::adam(na, dxx.p(), dgg.p(), dmm.p(), dvv.p(), dclock.p(), 0.9, 0.999, 1e-8);
    CHECK(rel_err(dxx.host(), x) < 1e-6);
    CHECK(rel_err(dvv.host(), v) < 1e-6);
  }

  TEST_CASE_TEMPLATE("model parity: same weights, loss parts and every gradient as cpu", M, models::LM,
                     models::DAE, models::VAE, Coupled<models::VAE>, models::BetaVAE, Coupled<models::BetaVAE>,
                     models::VMFVAE, Coupled<models::VMFVAE>, models::CNNVAE, Coupled<models::CNNVAE>, models::WAE,
                     Coupled<models::WAE>, models::VAENF, Coupled<models::VAENF>, models::WAENF,
                     Coupled<models::WAENF>) {
    const int V = 60;
    check_model_parity<M>(small_config(V), sentences(V, 9, 5));
  }

  // SA-VAE (its SVI reads norms on the host, and its n2n gradient differences float
  // gradients, so the tolerance is wider) and one aggressive Lagging-VAE step (Adam groups,
  // the inner loop's host reads): the same numbers on both backends.
  TEST_CASE("SA-VAE and an aggressive Lagging-VAE step agree with cpu") {
    const int V = 60;
    Config cfg = small_config(V);
    cfg.svi_steps = 5;
    const auto sents = sentences(V, 9, 5);
    const Batch batch = make_batch(sents, V);
    {
      models::SAVAE a(cfg, 2024);
      with_backend_t<models::SAVAE, cuda> b(cfg, 2024);
      Context<cpu> ca(99, true);
      Context<cuda> cb(99, true);
      const Losses la = a.forward(ca, batch, 7), lb = b.forward(cb, batch, 7);
      CHECK(lb.loss == doctest::Approx(la.loss).epsilon(1e-4));
      CHECK(lb.kl == doctest::Approx(la.kl).epsilon(1e-3));
      a.zero_grad();
      b.zero_grad();
      a.backward(ca);
      b.backward(cb);
      CHECK(ca.rng.position == cb.rng.position);
      check_grads(a, b, 5e-3);
      Context<cpu> ea(5, false);
      Context<cuda> eb(5, false);
      const auto ia = a.importance_weights(ea, batch, 4), ib = b.importance_weights(eb, batch, 4);
      for (size_t i = 0; i < ia.log_weight.size(); ++i)
        CHECK(ib.log_weight[i] == doctest::Approx(ia.log_weight[i]).epsilon(1e-3));
    }
    {
      cfg.aggressive_inner = 4;
      cfg.aggressive_window = 100;
      models::VAE a(cfg, 7);
      with_backend_t<models::VAE, cuda> b(cfg, 7);
      Adam<float, cpu> oa(a.arena(), cfg);
      Adam<float, cuda> ob(b.arena(), cfg);
      oa.split(inference_range(a.arena()));
      ob.split(inference_range(b.arena()));
      StepGuard<cpu> ga(cfg.clip_norm, 5), ia(cfg.clip_norm, 5);
      StepGuard<cuda> gb(cfg.clip_norm, 5), ib(cfg.clip_norm, 5);
      Batcher sa(sents, V, 3, 4), sb(sents, V, 3, 4);
      Context<cpu> ca(1, true);
      Context<cuda> cb(1, true);
      CHECK(aggressive_step(a, ca, batch, 5, oa, ga, ia, sa) == 4);
      CHECK(aggressive_step(b, cb, batch, 5, ob, gb, ib, sb) == 4);
      CHECK(ob.inference_steps() == 4);
      CHECK(ob.steps() == 1);
      CHECK(rel_err(b.arena().values().to_host(), a.arena().values().to_host()) < 1e-4);
    }
  }

  // The whole-pass GRU kernels (runtime persistent_recurrence, recurrence.cuh), on a batch of
  // 70 (three row tiles) and hidden sizes that need several unit tiles and K chunks.
  TEST_CASE_TEMPLATE("model parity with the persistent GRU kernels", M, models::LM, models::VAE,
                     Coupled<models::VAE>, models::CNNVAE) {
    const int V = 60;
    struct Persistent {
      const bool was = cuda_rt::runtime().persistent_recurrence;
      Persistent() { cuda_rt::runtime().persistent_recurrence = true; }
      ~Persistent() { cuda_rt::runtime().persistent_recurrence = was; }
    } on;
    const size_t passes = cuda_rt::runtime().persistent_passes;
    check_model_parity<M>(small_config(V), sentences(V, 70, 8));
    Config wide = small_config(V);
    wide.hidden = 40;  // encoder H 40, decoder 80: K chunks of 32 and unit tiles of 16 with tails
    check_model_parity<M>(wide, sentences(V, 9, 9));
    // the kernels ran (they decline where no cooperative grid can be launched): at least a
    // forward and a backward pass of each GRU in each of the two checks
    CHECK(cuda_rt::runtime().persistent_passes >= passes + 4);
  }

  // Whole steps as CUDA Graphs (backend/cuda/graph.cuh) on bucketed batches: the same steps
  // run eagerly on cuda, replayed from graphs on cuda, and on cpu. Sentences of 7 or 8 words
  // in batches of 6 give few shapes (longest 8, almost always, and 48 output rows), so steps
  // warm up, capture and replay, patching the KL weight (annealed every step) and the noise
  // positions; halfway the recurrence mode changes, so a replay meets other kernels, falls
  // back to eager and its shape is captured again. (cuda.mock runs the same machinery without
  // a GPU.) The first GPU run (H200, 2026-12-04) had lengths 1-12: a dozen shapes in 16
  // steps, so only one replay.
  TEST_CASE_TEMPLATE("training steps replayed from CUDA Graphs equal eager steps and the cpu's", M, models::LM,
                     models::VAE, Coupled<models::VAE>, Coupled<models::VMFVAE>, models::CNNVAE,
                     Coupled<models::WAENF>) {
    const int V = 60, steps = 16;
    Config cfg = small_config(V);
    cfg.batch_size = 6;
    cfg.clip_norm = 0.5;  // clipping active: the guard's gate is in the graph too
    using Mc = with_backend_t<M, cuda>;
    cuda_rt::Runtime& rt = cuda_rt::runtime();
    struct Restore {
      cuda_rt::Runtime& rt;
      const bool graphs = rt.step_graphs, fused = rt.fused_recurrence;
      ~Restore() { rt.step_graphs = graphs, rt.fused_recurrence = fused; }
    } restore{rt};
    std::vector<std::vector<int32_t>> train = sentences(V, 30, 21);
    for (size_t i = 0; i < train.size(); ++i) {
      train[i].resize(7 + i % 2, 4);
      train[i][0] = int32_t(4 + i);
    }
    struct Trace {
      std::vector<double> loss;
      std::vector<float> values, grads;
    };
    auto run = [&]<class Model>(Model& m, bool graphs) {
      using B = typename Model::backend;
      rt.step_graphs = graphs;
      rt.fused_recurrence = true;
      Adam<float, B> adam(m.arena(), cfg);
      StepGuard<B> guard(cfg.clip_norm, 20);
      Batcher batches(train, V, 4, cfg.batch_size);
      batches.set_bucket(4);
      Context<B> ctx(8, true);
      Trace tr;
      for (long t = 1; t <= steps; ++t) {
        if (t == steps / 2 + 1) rt.fused_recurrence = false;
        train_step(m, ctx, batches.next(), t, adam, guard);
        tr.loss.push_back(guard.read().last.loss);
      }
      tr.values = m.arena().values().to_host();
      tr.grads = m.arena().grads().to_host();  // the last step's
      return tr;
    };
    M cpu_model(cfg, 77);
    Mc eager_model(cfg, 77), graph_model(cfg, 77);
    const Trace tc = run(cpu_model, false);
    const Trace te = run(eager_model, false);
    const cuda_rt::GraphStats before = cuda_rt::step_graphs().stats;
    const Trace tg = run(graph_model, true);
    const cuda_rt::GraphStats& after = cuda_rt::step_graphs().stats;
    INFO("captures " << after.captures - before.captures << ", replays " << after.replays - before.replays
                     << ", patched nodes " << after.patched - before.patched << ", fallbacks "
                     << after.fallbacks - before.fallbacks << " (last: " << after.last_fallback << ")");
    CHECK(after.captures - before.captures >= 2);
    CHECK(after.replays - before.replays >= 6);
    CHECK(after.patched > before.patched);
    CHECK(after.fallbacks - before.fallbacks >= 1);  // the recurrence switch
    CHECK(after.fallbacks - before.fallbacks <= 3);
    for (int t = 0; t < steps; ++t) {
      CAPTURE(t);
      CHECK(tg.loss[t] == doctest::Approx(te.loss[t]).epsilon(1e-5));
      CHECK(tg.loss[t] == doctest::Approx(tc.loss[t]).epsilon(1e-3));
    }
    CHECK(rel_err(tg.grads, te.grads) < 1e-4);
    CHECK(rel_err(tg.values, tc.values) < 1e-3);
    // The values, tensor by tensor, as the eager run's within float rounding; except where a
    // tensor's gradient is float noise around zero (a conv bias in front of BatchNorm): Adam
    // scales noise up to steps of about the learning rate, and the noise differs from run to
    // run (the order of atomic sums), so such a tensor is held to the cpu's tolerance. (On the
    // first GPU run the whole arena's values differed by 7.6e-4 for CNN-VAE and 6.3e-4 for
    // Coupled WAE-NF, against 1e-5 for the others.)
    double largest = 0;
    for (float g : te.grads) largest = std::max(largest, double(std::abs(g)));
    for (const ParamInfo& p : eager_model.arena().infos()) {
      double diff = 0, scale = 0, grad = 0;
      for (size_t k = p.offset; k < p.offset + p.size; ++k) {
        const double d = std::abs(double(tg.values[k]) - double(te.values[k]));
        if (!(d <= diff)) diff = d;  // a NaN sticks
        scale = std::max(scale, double(std::abs(te.values[k])));
        grad = std::max(grad, double(std::abs(te.grads[k])));
      }
      const bool noise = grad < 1e-3 * largest;
      INFO("values of " << p.name << ": max |diff| " << diff << ", max |eager| " << scale << ", max |gradient| " << grad
                        << " (largest of the model " << largest << (noise ? ": noise" : "") << ")");
      CHECK(diff <= (noise ? 1e-3 : 1e-5) * std::max(scale, 1e-3));
    }
  }

  TEST_CASE("200 training steps of couple-vae track the cpu run") {
    namespace fs = std::filesystem;
    std::vector<std::vector<int32_t>> train;
    int V = 0;
    Config cfg = Config::preset("ptb");
    if (fs::exists(fs::path(COUPLEVAE_PTB_DIR) / "train.txt")) {
      Dataset d = load_dataset(COUPLEVAE_PTB_DIR);
      V = d.vocab.size();
      train = std::move(d.train);
      MESSAGE("PTB from " << COUPLEVAE_PTB_DIR);
    } else {
      const std::string dir = (fs::temp_directory_path() / "couplevae-cuda-toy").string();
      write_toy_corpus(dir, 3);
      Dataset d = load_dataset(dir);
      V = d.vocab.size();
      train = std::move(d.train);
      MESSAGE("no PTB at " << COUPLEVAE_PTB_DIR << ": the toy corpus");
    }
    cfg.vocab_size = V;
    using M = Coupled<models::VAE>;
    using Mc = with_backend_t<M, cuda>;
    M a(cfg, 1);
    Mc b(cfg, 1);
    Adam<float, cpu> oa(a.arena(), cfg);
    Adam<float, cuda> ob(b.arena(), cfg);
    StepGuard<cpu> ga(cfg.clip_norm, 20);
    StepGuard<cuda> gb(cfg.clip_norm, 20);
    Batcher batches(train, V, 11, cfg.batch_size);
    Context<cpu> ca(3, true);
    Context<cuda> cb(3, true);
    double worst = 0;
    for (long step = 1; step <= 200; ++step) {
      const Batch batch = batches.next();
      // train_step on each backend, the guard's tally read back after every step.
      train_step(a, ca, batch, step, oa, ga);
      train_step(b, cb, batch, step, ob, gb);
      const StepTally ta = ga.read(), tb = gb.read();
      REQUIRE(ta.skipped == 0);
      REQUIRE(tb.skipped == 0);
      const Losses &la = ta.last, &lb = tb.last;
      if (step == 1) CHECK(tb.norm == doctest::Approx(ta.norm).epsilon(1e-3));  // same weights, batch and noise
      const double d = std::abs(lb.loss - la.loss) / std::abs(la.loss);
      worst = std::max(worst, d);
      if (step % 25 == 0) MESSAGE("step " << step << ": cpu " << la.loss << ", cuda " << lb.loss);
    }
    MESSAGE("largest relative loss difference over 200 steps: " << worst);
    CHECK(worst < 1e-2);
  }
}
