// Decoder<DilatedCNN> and nn::Conv1d (reference.md §4 CNN decoder, §6).
// Conv1d against a PyTorch-semantics reference (zero padding (K-1)d on both sides, last
// (K-1)d outputs dropped), causality checked numerically, gradients against central
// differences for kernels 1 and 3 and dilations 1, 2, 4 (pre-filled gradient buffers, so
// a backward that overwrites instead of accumulating fails). The decoder: its loss and BN
// running statistics against a naive (B, C, T) implementation written here from the
// authors' description; gradients in training mode (dropout on, BN batch statistics) for
// every parameter, h and the embedding; decode() against the argmax of the teacher-forced
// forward; sampling statistics; whole Model / Coupled<Model> gradient checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>
#include <couplevae/decoder/dilated_cnn.hpp>
#include <couplevae/nn/conv1d.hpp>

#include "gradcheck.hpp"

using namespace couplevae;
using gradcheck::randn;
using gradcheck::dot;
using gradcheck::param;
using A = Arena<double>;
using CNNDec = Decoder<DilatedCNN>::module<double, cpu>;

namespace {

using Seq = std::vector<std::vector<std::vector<double>>>;  // [b][c][t]

// PyTorch's Conv1d(C, O, K, dilation=d, padding=pad) on x[b][c][t].
Seq torch_conv1d(const Seq& x, const double* W, const double* bias, int O, int K, int d, int pad) {
  const int Bn = int(x.size()), C = int(x[0].size()), Tin = int(x[0][0].size());
  const int Tout = Tin + 2 * pad - d * (K - 1);
  Seq y(Bn, std::vector<std::vector<double>>(O, std::vector<double>(Tout)));
  for (int b = 0; b < Bn; ++b)
    for (int o = 0; o < O; ++o)
      for (int t = 0; t < Tout; ++t) {
        double s = bias ? bias[o] : 0.0;
        for (int c = 0; c < C; ++c)
          for (int k = 0; k < K; ++k) {
            const int src = t + k * d - pad;
            if (src >= 0 && src < Tin) s += W[(o * C + c) * K + k] * x[b][c][src];
          }
        y[b][o][t] = s;
      }
  return y;
}
Seq drop_last(Seq x, int n) {
  for (auto& xb : x)
    for (auto& xc : xb) xc.resize(xc.size() - n);
  return x;
}
// (B*T, C) row b*T+t  <->  [b][c][t]
Seq to_seq(const std::vector<double>& m, int Bn, int T, int C) {
  Seq y(Bn, std::vector<std::vector<double>>(C, std::vector<double>(T)));
  for (int b = 0; b < Bn; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) y[b][c][t] = m[(size_t(b) * T + t) * C + c];
  return y;
}

Config tiny_config() {
  Config c = gradcheck::tiny_model_config();
  c.cnn_channels = 4;
  c.cnn_dilations = {1, 2};
  return c;
}
// Sorted by length (longest first), so the batch order is the identity.
std::vector<std::vector<int32_t>> tiny_sentences() { return {{8, 9, 10, 11, 12}, {4, 5, 6}, {7, 3}, {5}}; }
}  // namespace

// --- Conv1d -------------------------------------------------------------------------------

TEST_CASE("conv1d: forward equals PyTorch's padded convolution with the tail dropped, tail and windows") {
  for (int K : {1, 3})
    for (int d : {1, 2, 4}) {
      if (K == 1 && d > 1) continue;
      CAPTURE(K);
      CAPTURE(d);
      A ar;
      nn::Conv1d<double> conv(ar, "conv", 3, 2, K, d);
      ar.finalize();
      ar.initialise(10 + K + d);
      CHECK(ar.info(conv.W).shape == std::vector<int>{2, 3, K});
      Context<> ctx(1);
      const int Bn = 2, T = 7, p = (K - 1) * d;
      auto x = randn(size_t(Bn) * T * 3, 3);
      const Seq full = torch_conv1d(to_seq(x, Bn, T, 3), ar.value(conv.W), ar.value(conv.b), 2, K, d, p);
      REQUIRE(int(full[0][0].size()) == T + p);
      // Causal outputs [0, T), with the tail [0, T + p), and an interior window [2, 5).
      for (auto [t0, t1] : {std::pair{0, T}, std::pair{0, T + p}, std::pair{2, 5}}) {
        std::vector<double> y(size_t(Bn) * (t1 - t0) * 2);
        nn::Conv1d<double>::Cache c;
        conv.forward(ctx, ar, {x.data(), Bn * T, 3}, Bn, T, t0, t1, {y.data(), Bn * (t1 - t0), 2}, c);
        for (int b = 0; b < Bn; ++b)
          for (int t = t0; t < t1; ++t)
            for (int o = 0; o < 2; ++o)
              CHECK(y[(size_t(b) * (t1 - t0) + t - t0) * 2 + o] == doctest::Approx(full[b][o][t]).epsilon(1e-13));
      }
    }
}

TEST_CASE("conv1d: im2col and col2im large enough to run on threads equal their bodies run one index at a time") {
  // 8 sequences x 48 output steps x 3 taps x 400 channels: above launch<cpu>'s threshold,
  // so the host shares indices (im2col) and sequences (col2im) among OpenMP threads.
  const int Bn = 8, T = 40, C = 400, K = 3, d = 4, t0 = 0, t1 = T + (K - 1) * d, w = t1 - t0;
  Rng rng(21);
  std::vector<float> X(size_t(Bn) * T * C), dcols(size_t(Bn) * w * C * K), dX0(X.size());
  rng.normal(X.data(), X.size());
  rng.normal(dcols.data(), dcols.size());
  rng.normal(dX0.data(), dX0.size());
  std::vector<float> cols(dcols.size()), cols1(dcols.size()), dX = dX0, dX1 = dX0;
  conv_ops<cpu>::im2col_causal(Bn, T, C, K, d, t0, t1, X.data(), C, cols.data());
  conv_ops<cpu>::col2im_causal_acc(Bn, T, C, K, d, t0, t1, dcols.data(), dX.data(), C);
  const conv_kernels::Im2Col<float> im{w, T, C, K, d, t0, C, X.data(), cols1.data()};
  const conv_kernels::Col2Im<float> ci{w, T, C, K, d, t0, C, dcols.data(), dX1.data()};
  for (size_t i = 0; i < size_t(Bn) * w * K; ++i) im(i), ci(i);
  CHECK(cols == cols1);
  CHECK(dX == dX1);
  // And against the definition at a few entries: col[row, c*K + k] = x[b, t - (K-1-k) d, c].
  CHECK(cols[(size_t(3) * w + 10) * C * K + 7 * K + 0] == X[(size_t(3) * T + 10 - 2 * d) * C + 7]);
  CHECK(cols[(size_t(5) * w + 2) * C * K + 9 * K + 1] == 0.0f);  // t - d < 0
  CHECK(cols[(size_t(5) * w + T + 1) * C * K + 9 * K + 2] == 0.0f);  // the tail reads past the end
}

TEST_CASE("conv1d: causal (numerically: no output depends on a later input, nor on another sequence)") {
  for (int d : {1, 2, 4}) {
    CAPTURE(d);
    A ar;
    nn::Conv1d<double> conv(ar, "conv", 2, 3, 3, d);
    ar.finalize();
    ar.initialise(5);
    Context<> ctx(1);
    const int Bn = 2, T = 9;
    auto x = randn(size_t(Bn) * T * 2, 7);
    std::vector<double> y0(size_t(Bn) * T * 3), y1(y0.size());
    nn::Conv1d<double>::Cache c;
    conv.forward(ctx, ar, {x.data(), Bn * T, 2}, Bn, T, T, {y0.data(), Bn * T, 3}, c);
    for (int b = 0; b < Bn; ++b)
      for (int s = 0; s < T; ++s)
        for (int ch = 0; ch < 2; ++ch) {
          const size_t i = (size_t(b) * T + s) * 2 + ch;
          const double x0 = x[i];
          x[i] = x0 + 0.5;
          conv.forward(ctx, ar, {x.data(), Bn * T, 2}, Bn, T, T, {y1.data(), Bn * T, 3}, c);
          x[i] = x0;
          for (int bb = 0; bb < Bn; ++bb)
            for (int t = 0; t < T; ++t) {
              double diff = 0;
              for (int o = 0; o < 3; ++o) diff += std::abs(y1[(size_t(bb) * T + t) * 3 + o] - y0[(size_t(bb) * T + t) * 3 + o]);
              // Only the taps t = s, s + d, s + 2d of the same sequence may change.
              const bool tap = bb == b && (t == s || t == s + d || t == s + 2 * d);
              if (tap)
                CHECK(diff > 0);
              else
                CHECK(diff == 0.0);
            }
        }
  }
}

TEST_CASE("conv1d: gradients for kernels 1 and 3, dilations 1, 2, 4, with and without the tail, and a window") {
  struct Case {
    int K, d, t0, extra;  // window [t0, T + extra)
  };
  for (Case cs : {Case{1, 1, 0, 0}, Case{3, 1, 0, 0}, Case{3, 2, 0, 0}, Case{3, 4, 0, 0}, Case{3, 2, 0, 4},
                  Case{3, 4, 0, 8}, Case{3, 2, 3, 0}, Case{1, 1, 2, 0}}) {
    CAPTURE(cs.K);
    CAPTURE(cs.d);
    CAPTURE(cs.t0);
    CAPTURE(cs.extra);
    A ar;
    nn::Conv1d<double> conv(ar, "conv", 3, 4, cs.K, cs.d);
    ar.finalize();
    ar.initialise(20 + cs.K * 7 + cs.d);
    Context<> ctx(1);
    const int Bn = 2, T = 6, t1 = T + cs.extra, w = t1 - cs.t0;
    auto x = randn(size_t(Bn) * T * 3, 8), wy = randn(size_t(Bn) * w * 4, 9);
    std::vector<double> y(wy.size()), dx(x.size());
    nn::Conv1d<double>::Cache c;
    auto loss = [&] {
      conv.forward(ctx, ar, {x.data(), Bn * T, 3}, Bn, T, cs.t0, t1, {y.data(), Bn * w, 4}, c);
      return dot(y.data(), wy);
    };
    auto dx_pre = randn(x.size(), 10);
    auto probes = gradcheck::arena_probes(ar, [&] {
      loss();
      dx = dx_pre;  // pre-filled: backward must add
      conv.backward(ctx, ar, {x.data(), Bn * T, 3}, Bn, T, cs.t0, t1, {wy.data(), Bn * w, 4},
                    {dx.data(), Bn * T, 3}, c);
      for (size_t i = 0; i < dx.size(); ++i) dx[i] -= dx_pre[i];
    });
    probes.push_back({"x", x.data(), dx});
    CHECK(gradcheck::check(probes, loss, {30}) > 40);
  }
}

TEST_CASE("conv1d: the gradient of the output at t reaches no input after t") {
  A ar;
  nn::Conv1d<double> conv(ar, "conv", 2, 2, 3, 2);
  ar.finalize();
  ar.initialise(3);
  Context<> ctx(1);
  const int Bn = 1, T = 8;
  auto x = randn(size_t(T) * 2, 4);
  std::vector<double> y(size_t(T) * 2);
  nn::Conv1d<double>::Cache c;
  for (int t = 0; t < T; ++t) {
    conv.forward(ctx, ar, {x.data(), T, 2}, Bn, T, T, {y.data(), T, 2}, c);
    std::vector<double> dy(size_t(T) * 2, 0.0), dx(size_t(T) * 2, 0.0);
    dy[t * 2] = 1.0;
    dy[t * 2 + 1] = -0.7;
    conv.backward(ctx, ar, {x.data(), T, 2}, Bn, T, T, {dy.data(), T, 2}, {dx.data(), T, 2}, c);
    for (int s = 0; s < T; ++s) {
      const double g = std::abs(dx[s * 2]) + std::abs(dx[s * 2 + 1]);
      if (s > t || (s != t && s != t - 2 && s != t - 4))
        CHECK(g == 0.0);
      else
        CHECK(g > 0);
    }
  }
}

// --- Decoder<DilatedCNN>: reference forward ----------------------------------------------

namespace {
// A naive decoder in PyTorch's (B, C, T) layout, from the authors' description
// (reference.md §6): conv2 with padding 2d on both sides and the last 2d steps dropped at
// the end of the block (tail = true) or right after conv2 (tail = false).
struct NaiveOut {
  std::vector<double> rec;
  std::vector<std::vector<double>> bn_means;  // per BN in order (block, 1..3): batch means
};
NaiveOut naive_decoder(A& ar, const Config& cfg, const std::vector<std::vector<int32_t>>& sents,
                       const std::vector<double>& h, bool training, bool tail) {
  const int Bn = int(sents.size()), E = cfg.embed, F = cfg.cnn_channels, V = cfg.vocab_size;
  int Lmax = 0;
  for (auto& s : sents) Lmax = std::max(Lmax, int(s.size()));
  const int T = Lmax + 2;
  const double* emb = param(ar, "embedding.weight");
  Seq x(Bn, std::vector<std::vector<double>>(2 * E, std::vector<double>(T)));
  for (int b = 0; b < Bn; ++b)
    for (int t = 0; t < T; ++t) {
      int tok = pad_id;
      if (t == 1) tok = go_id;
      if (t >= 2 && t - 2 < int(sents[b].size())) tok = sents[b][t - 2];
      for (int k = 0; k < E; ++k) {
        x[b][k][t] = t == 0 ? h[b * E + k] : emb[tok * E + k];
        x[b][E + k][t] = h[b * E + k];
      }
    }
  NaiveOut res;
  auto bn_relu = [&](Seq s, const std::string& name) {
    const double *g = param(ar, name + ".weight"), *be = param(ar, name + ".bias");
    const double *rm = param(ar, name + ".running_mean"), *rv = param(ar, name + ".running_var");
    const int Tn = int(s[0][0].size());
    std::vector<double> means;
    for (int c = 0; c < F; ++c) {
      double m = 0, v = 0;
      for (int b = 0; b < Bn; ++b)
        for (int t = 0; t < Tn; ++t) m += s[b][c][t];
      m /= Bn * Tn;
      for (int b = 0; b < Bn; ++b)
        for (int t = 0; t < Tn; ++t) v += (s[b][c][t] - m) * (s[b][c][t] - m);
      v /= Bn * Tn;
      means.push_back(m);
      if (!training) m = rm[c], v = rv[c];
      for (int b = 0; b < Bn; ++b)
        for (int t = 0; t < Tn; ++t) s[b][c][t] = std::max(0.0, g[c] * (s[b][c][t] - m) / std::sqrt(v + 1e-5) + be[c]);
    }
    res.bn_means.push_back(means);
    return s;
  };
  auto P = [&](const std::string& n) { return param(ar, n); };
  x = torch_conv1d(x, P("decoder.conv_in.weight"), P("decoder.conv_in.bias"), F, 1, 1, 0);
  for (size_t i = 0; i < cfg.cnn_dilations.size(); ++i) {
    const int d = cfg.cnn_dilations[i];
    const std::string p = "decoder.blocks." + std::to_string(i);
    Seq r = torch_conv1d(x, P(p + ".conv1.weight"), P(p + ".conv1.bias"), F, 1, 1, 0);
    r = bn_relu(r, p + ".bn1");
    r = torch_conv1d(r, P(p + ".conv2.weight"), P(p + ".conv2.bias"), F, 3, d, 2 * d);
    if (!tail) r = drop_last(r, 2 * d);
    r = bn_relu(r, p + ".bn2");
    r = torch_conv1d(r, P(p + ".conv3.weight"), P(p + ".conv3.bias"), F, 1, 1, 0);
    r = bn_relu(r, p + ".bn3");
    if (tail) r = drop_last(r, 2 * d);
    for (int b = 0; b < Bn; ++b)
      for (int c = 0; c < F; ++c)
        for (int t = 0; t < T; ++t) x[b][c][t] += r[b][c][t];
  }
  const double *Wo = P("decoder.out.weight"), *bo = P("decoder.out.bias");
  res.rec.assign(Bn, 0.0);
  for (int b = 0; b < Bn; ++b) {
    const int L = int(sents[b].size());
    for (int t = 1; t <= L + 1; ++t) {
      std::vector<double> lg(V);
      double m = -1e300;
      for (int v = 0; v < V; ++v) {
        lg[v] = bo[v];
        for (int c = 0; c < F; ++c) lg[v] += Wo[v * F + c] * x[b][c][t];
        m = std::max(m, lg[v]);
      }
      double s = 0;
      for (int v = 0; v < V; ++v) s += std::exp(lg[v] - m);
      const int y = t <= L ? sents[b][t - 1] : eos_id;
      res.rec[b] += std::log(s) + m - lg[y];
    }
  }
  return res;
}

// The decoder and the shared embedding in one arena.
struct DecoderRig {
  A ar;
  nn::Embedding<double> emb;
  CNNDec dec;
  explicit DecoderRig(const Config& c, uint64_t seed, bool tail = true) {
    emb = nn::Embedding<double>(ar, "embedding", c.vocab_size, c.embed);
    dec = CNNDec(ar, "decoder", c);
    dec.tail_in_batch_stats = tail;
    ar.finalize();
    ar.initialise(seed);
    // Non-trivial BN affine parameters and running statistics.
    Rng r(seed + 1);
    ar.visit([&](const ParamInfo& info, double* v, double*) {
      const bool bn = info.name.find(".bn") != std::string::npos;
      if (!bn) return;
      std::vector<double> n(info.size);
      r.normal(n.data(), n.size());
      for (size_t k = 0; k < info.size; ++k) {
        if (info.name.ends_with(".weight")) v[k] = 1.0 + 0.3 * n[k];
        if (info.name.ends_with(".bias")) v[k] = 0.2 * n[k];
        if (info.name.ends_with(".running_mean")) v[k] = 0.3 * n[k];
        if (info.name.ends_with(".running_var")) v[k] = 0.5 + 0.2 * std::abs(n[k]);
      }
    });
  }
};
}  // namespace

TEST_CASE("cnn decoder: parameters, shapes and names") {
  Config c = tiny_config();
  DecoderRig rig(c, 1);
  CHECK(rig.ar.info(rig.dec.conv_in.W).shape == std::vector<int>{4, 8, 1});
  CHECK(rig.dec.blocks.size() == 2);
  CHECK(rig.ar.info(rig.dec.blocks[1].conv2.W).shape == std::vector<int>{4, 4, 3});
  CHECK(rig.dec.blocks[1].conv2.dilation == 2);
  CHECK(rig.ar.info(rig.dec.out.W).shape == std::vector<int>{13, 4});
  int bn = 0;
  for (const auto& info : rig.ar.infos()) bn += info.name.ends_with(".running_var") && !info.trainable;
  CHECK(bn == 6);
  param(rig.ar, "decoder.blocks.1.bn3.running_mean");
  param(rig.ar, "decoder.blocks.0.conv3.bias");
}

TEST_CASE("cnn decoder: loss and BN statistics equal a naive (B, C, T) implementation") {
  for (bool tail : {true, false})
    for (bool training : {true, false}) {
      CAPTURE(tail);
      CAPTURE(training);
      Config c = tiny_config();
      c.dropout = 0.0;  // the reference has no dropout masks
      DecoderRig rig(c, 3, tail);
      const auto sents = tiny_sentences();
      const Batch b = make_batch(sents, c.vocab_size);
      for (int i = 0; i < 4; ++i) REQUIRE(b.order[i] == i);
      auto h = randn(4 * c.embed, 12);
      // The reference reads the running statistics before the forward moves them.
      const NaiveOut ref = naive_decoder(rig.ar, c, sents, h, training, tail);
      const double rm_before = param(rig.ar, "decoder.blocks.1.bn2.running_mean")[2];
      Context<> ctx(4, training);
      std::vector<double> rec(4);
      CNNDec::Cache cache;
      rig.dec.forward(ctx, rig.ar, rig.emb, b, {h.data(), 4, c.embed}, {rec.data(), 4, 1}, cache);
      for (int i = 0; i < 4; ++i) CHECK(rec[i] == doctest::Approx(ref.rec[i]).epsilon(1e-11));
      // BN2 of block 1 (index 4 in the reference's order) moved 10% toward its batch mean;
      // with the tail that mean runs over B * (T + 4) positions.
      const double rm_after = param(rig.ar, "decoder.blocks.1.bn2.running_mean")[2];
      if (training)
        CHECK(rm_after == doctest::Approx(0.9 * rm_before + 0.1 * ref.bn_means[4][2]).epsilon(1e-12));
      else
        CHECK(rm_after == rm_before);
      // loss (evaluation's pass: blocks in place, chunked vocabulary layer; in evaluation
      // mode, groups of one length each for T = 7 and 3, one for T = 5 and 4) on a fresh
      // copy: the same rec and the same running-statistics update; backward then refuses.
      DecoderRig twin(c, 3, tail);
      twin.dec.group_rows = 1;
      CHECK(twin.dec.length_groups(b.lengths) == std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {3, 4}});
      Context<> ctx2(4, training);
      std::vector<double> rec2(4, -1.0), dh(4 * c.embed, 0.0), drec(4, 1.0);
      CNNDec::Cache cache2;
      twin.dec.loss(ctx2, twin.ar, twin.emb, b, {h.data(), 4, c.embed}, {rec2.data(), 4, 1}, cache2);
      for (int i = 0; i < 4; ++i) CHECK(rec2[i] == doctest::Approx(ref.rec[i]).epsilon(1e-11));
      CHECK(param(twin.ar, "decoder.blocks.1.bn2.running_mean")[2] == rm_after);
      CHECK(cache2.blocks.size() == 1);
      CHECK_THROWS_WITH_AS(twin.dec.backward(ctx2, twin.ar, twin.emb, b, {h.data(), 4, c.embed},
                                             {drec.data(), 4, 1}, {dh.data(), 4, c.embed}, cache2),
                           doctest::Contains("needs forward (not loss)"), std::exception);
    }
}

TEST_CASE("cnn decoder: the tail changes training-mode statistics only") {
  Config c = tiny_config();
  c.dropout = 0.0;
  const Batch b = make_batch(tiny_sentences(), c.vocab_size);
  auto h = randn(4 * c.embed, 12);
  double rec_sum[2][2];
  for (int tail = 0; tail < 2; ++tail)
    for (int training = 0; training < 2; ++training) {
      DecoderRig rig(c, 3, tail);
      Context<> ctx(4, training);
      std::vector<double> rec(4);
      CNNDec::Cache cache;
      rig.dec.forward(ctx, rig.ar, rig.emb, b, {h.data(), 4, c.embed}, {rec.data(), 4, 1}, cache);
      rec_sum[tail][training] = rec[0] + rec[1] + rec[2] + rec[3];
    }
  CHECK(rec_sum[0][0] == doctest::Approx(rec_sum[1][0]).epsilon(1e-13));
  CHECK(std::abs(rec_sum[0][1] - rec_sum[1][1]) > 1e-6);
}

// --- Decoder<DilatedCNN>: gradients ------------------------------------------------------

TEST_CASE("cnn decoder: gradients w.r.t. every parameter, h and the embedding (training, dropout, BN batch stats)") {
  for (bool tail : {true, false}) {
    CAPTURE(tail);
    Config c = tiny_config();
    c.dropout = 0.3;
    DecoderRig rig(c, 5, tail);
    const Batch b = make_batch(tiny_sentences(), c.vocab_size);
    auto h = randn(4 * c.embed, 13), w = randn(4, 14);
    std::vector<double> rec(4), dh(h.size());
    auto dh_pre = randn(h.size(), 15);
    Context<> ctx(6, true);
    CNNDec::Cache cache;
    auto loss = [&] {
      ctx.rng.position = 0;  // the same dropout masks every call
      rig.dec.forward(ctx, rig.ar, rig.emb, b, {h.data(), 4, c.embed}, {rec.data(), 4, 1}, cache);
      return dot(rec.data(), w);
    };
    loss();
    int dropped = 0;
    for (const double m : cache.drop.mask.to_host()) dropped += m == 0.0;
    CHECK(dropped > 0);
    auto probes = gradcheck::arena_probes(rig.ar, [&] {
      loss();
      dh = dh_pre;
      rig.dec.backward(ctx, rig.ar, rig.emb, b, {h.data(), 4, c.embed}, {w.data(), 4, 1}, {dh.data(), 4, c.embed},
                       cache);
      for (size_t i = 0; i < dh.size(); ++i) dh[i] -= dh_pre[i];
    });
    probes.push_back({"h", h.data(), dh});
    // The <pad> row of the embedding reaches the loss only through the BN statistics.
    bool pad_grad = false;
    for (auto& p : probes)
      if (p.name == "embedding.weight")
        for (int k = 0; k < c.embed; ++k) pad_grad = pad_grad || p.grad[pad_id * c.embed + k] != 0.0;
    CHECK(pad_grad);
    gradcheck::Options o;
    o.per_tensor = 10;
    o.rtol = 1e-5;
    CHECK(gradcheck::check(probes, loss, o) > 180);
  }
}

// --- Decoder<DilatedCNN>: decoding -------------------------------------------------------

namespace {
// Teacher-forced evaluation-mode probabilities (L+1, V) of one sentence.
std::vector<std::vector<double>> teacher_probs(DecoderRig& rig, const Config& c, const std::vector<int32_t>& s,
                                               const double* h) {
  const Batch b = make_batch({s}, c.vocab_size);
  std::vector<double> hv(h, h + c.embed), rec(1);
  Context<> ctx(1, false);
  CNNDec::Cache cache;
  rig.dec.forward(ctx, rig.ar, rig.emb, b, {hv.data(), 1, c.embed}, {rec.data(), 1, 1}, cache);
  std::vector<std::vector<double>> p(s.size() + 1, std::vector<double>(c.vocab_size));
  const auto probs = cache.vocab.logits.to_host();  // softmax after the forward
  for (size_t t = 0; t <= s.size(); ++t)
    for (int v = 0; v < c.vocab_size; ++v) p[t][v] = probs[t * c.vocab_size + v];
  return p;
}
int argmax_no_unk(const std::vector<double>& p) {
  int best = -1;
  for (int v = 0; v < int(p.size()); ++v)
    if (v != unk_id && (best < 0 || p[v] > p[best])) best = v;
  return best;
}

// Checks greedy outputs against teacher forcing: every kept token is the argmax (without
// <unk>) of the evaluation-mode forward on its own prefix, and a sentence cut before max_len
// is followed by an <eos> prediction. Counts {full length, cut, only <eos>}.
std::array<int, 3> check_greedy(DecoderRig& rig, const Config& c, const std::vector<std::vector<int32_t>>& out,
                                const double* h, int max_len) {
  std::array<int, 3> kinds{0, 0, 0};
  for (size_t i = 0; i < out.size(); ++i) {
    const auto& s = out[i];
    CAPTURE(i);
    REQUIRE(!s.empty());
    REQUIRE(int(s.size()) <= max_len);
    if (s.size() == 1 && s[0] == eos_id) {
      ++kinds[2];  // the first token was <eos>: the prediction after <go> is <eos>
      CHECK(argmax_no_unk(teacher_probs(rig, c, {4}, h + i * c.embed)[0]) == eos_id);
      continue;
    }
    for (int32_t id : s) CHECK((id != eos_id && id != unk_id));
    const auto p = teacher_probs(rig, c, s, h + i * c.embed);
    for (size_t t = 0; t < s.size(); ++t) CHECK(argmax_no_unk(p[t]) == s[t]);
    if (int(s.size()) < max_len) {
      ++kinds[1];
      CHECK(argmax_no_unk(p[s.size()]) == eos_id);
    } else {
      ++kinds[0];
    }
  }
  return kinds;
}
}  // namespace

TEST_CASE("cnn decoder: greedy decode equals the argmax of the teacher-forced forward on its own prefix") {
  Config c = tiny_config();
  const int nb = 8, max_len = 7;
  DecoderRig rig(c, 21);
  // Sharper, more varied predictions than the initialisation gives; <pad> and <go> never
  // win (so prefixes are valid sentences), <unk> would always win if it were not masked.
  double* ow = rig.ar.value(rig.dec.out.W);
  for (int k = 0; k < c.vocab_size * c.cnn_channels; ++k) ow[k] *= 6;
  double* ob = rig.ar.value(rig.dec.out.b);
  ob[pad_id] = ob[go_id] = -50;
  ob[unk_id] = 50;
  auto h = randn(size_t(nb) * c.embed, 22, 3.0);
  const View<double> hv{h.data(), nb, c.embed};

  // <eos> never wins: every sentence runs the full max_len.
  ob[eos_id] = -50;
  Context<> ctx(9, true);
  const auto full = rig.dec.decode(ctx, rig.ar, rig.emb, hv, max_len, 0.0);
  CHECK(ctx.training);             // restored
  CHECK(ctx.rng.position == 0);    // greedy draws nothing
  REQUIRE(int(full.size()) == nb);
  CHECK(check_greedy(rig, c, full, h.data(), max_len)[0] == nb);

  // Raise the <eos> bias just enough to win first at a later position t* of sentence i:
  // the output is then the first t* tokens of the full decode.
  int cuts = 0;
  for (int i = 0; i < nb; ++i) {
    ob[eos_id] = -50;
    const auto p = teacher_probs(rig, c, full[i], h.data() + i * c.embed);
    std::vector<double> gap(max_len);  // log-odds of the best other token over <eos>
    for (int t = 0; t < max_len; ++t) {
      double best = -1e300;
      for (int v = 0; v < c.vocab_size; ++v)
        if (v != unk_id && v != eos_id) best = std::max(best, std::log(p[t][v]));
      gap[t] = best - std::log(p[t][eos_id]);
    }
    double lowest = gap[0];
    for (int t = 1; t < max_len; ++t) {
      if (gap[t] < lowest - 1e-6) {
        CAPTURE(i);
        CAPTURE(t);
        ob[eos_id] = -50 + 0.5 * (gap[t] + lowest);
        const auto cut = rig.dec.decode(ctx, rig.ar, rig.emb, {h.data() + i * c.embed, 1, c.embed}, max_len, 0.0);
        REQUIRE(int(cut[0].size()) == t);
        CHECK(std::equal(cut[0].begin(), cut[0].end(), full[i].begin()));
        CHECK(check_greedy(rig, c, cut, h.data() + i * c.embed, max_len)[1] == 1);
        ++cuts;
      }
      lowest = std::min(lowest, gap[t]);
    }
  }
  CHECK(cuts > 0);

  // <eos> always wins: every sentence is the single token <eos>.
  ob[eos_id] = 50;
  const auto eos = rig.dec.decode(ctx, rig.ar, rig.emb, hv, max_len, 0.0);
  CHECK(check_greedy(rig, c, eos, h.data(), max_len)[2] == nb);
}

TEST_CASE("cnn decoder: sampling follows softmax(logits / temperature) without <unk>, tiny temperature is greedy") {
  Config c = tiny_config();
  DecoderRig rig(c, 31);
  const int n = 20000;
  auto h1 = randn(c.embed, 32, 2.0);
  std::vector<double> h(size_t(n) * c.embed);
  for (int i = 0; i < n; ++i) std::copy(h1.begin(), h1.end(), h.begin() + size_t(i) * c.embed);
  const auto p = teacher_probs(rig, c, {4}, h1.data())[0];  // first-token distribution
  for (double temp : {1.0, 0.6}) {
    CAPTURE(temp);
    std::vector<double> q(c.vocab_size, 0.0);
    double z = 0;
    for (int v = 0; v < c.vocab_size; ++v)
      if (v != unk_id) z += q[v] = std::pow(p[v], 1.0 / temp);
    Context<> ctx(40 + uint64_t(temp * 10), false);
    const uint64_t pos = ctx.rng.position;
    const auto out = rig.dec.decode(ctx, rig.ar, rig.emb, {h.data(), n, c.embed}, 1, temp);
    CHECK(ctx.rng.position == pos + Rng::blocks_for(n));  // one uniform per sentence per step
    std::vector<double> count(c.vocab_size, 0.0);
    for (const auto& s : out) {
      REQUIRE(s.size() == 1);
      count[s[0]] += 1;
    }
    CHECK(count[unk_id] == 0.0);
    for (int v = 0; v < c.vocab_size; ++v) {
      const double e = q[v] / z, sd = std::sqrt(e * (1 - e) / n);
      CAPTURE(v);
      CHECK(std::abs(count[v] / n - e) <= 5 * sd + 1e-9);
    }
  }
  // Replaying the generator replays the samples; a tiny temperature is greedy.
  auto hs = randn(5 * c.embed, 33, 3.0);
  Context<> a(7, false), b(7, false), g(7, false);
  const auto s1 = rig.dec.decode(a, rig.ar, rig.emb, {hs.data(), 5, c.embed}, 6, 0.8);
  const auto s2 = rig.dec.decode(b, rig.ar, rig.emb, {hs.data(), 5, c.embed}, 6, 0.8);
  CHECK(s1 == s2);
  const auto greedy = rig.dec.decode(g, rig.ar, rig.emb, {hs.data(), 5, c.embed}, 6, 0.0);
  const auto cold = rig.dec.decode(g, rig.ar, rig.emb, {hs.data(), 5, c.embed}, 6, 1e-9);
  CHECK(greedy == cold);
}

// --- Whole models ------------------------------------------------------------------------

namespace {
using CNNVAEd = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<DilatedCNN>, cpu, double>;
using CCNNVAEd = Coupled<CNNVAEd>;
}  // namespace

TEST_CASE("Model<Gaussian, KL, DilatedCNN>: whole-model gradient check (double, dropout on, KL weight 0.5)") {
  Config c = tiny_config();
  CNNVAEd model(c, 7);
  CHECK(CNNVAEd::structure() == "gaussian-kl-cnn");
  const Batch b = gradcheck::tiny_model_batch(c.vocab_size);
  Context<> ctx(123, true);
  const Losses l = model.forward(ctx, b, 5);
  CHECK(l.kl_weight == doctest::Approx(0.5));
  // Untrained: close to uniform predictions, rec per sentence near (L+1) log V.
  CHECK(l.rec == doctest::Approx(double(b.target_tokens()) / 4 * std::log(13.0)).epsilon(0.5));
  gradcheck::check_model_gradients(model, b, 5, 5, 150);
}

TEST_CASE("Coupled<Model<Gaussian, KL, DilatedCNN>>: whole-model gradient check") {
  Config c = tiny_config();
  c.lambda_c = 2.5;  // large, so a wrong coupling gradient shows
  CCNNVAEd model(c, 8);
  gradcheck::check_model_gradients(model, gradcheck::tiny_model_batch(c.vocab_size), 5, 5, 150);
}
