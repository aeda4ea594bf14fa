// couplevae/decoder/dilated_cnn.hpp: Decoder<DilatedCNN>, the CNN-VAE's dilated convolutional
// decoder p(x|z) (reference.md §4 "CNN decoder", §6; Yang et al. 2017's residual blocks as the
// authors' cnn_vae.py builds them).
//
// Given the decoding signal h (B, E), per sentence w_1..w_L in the padded layout with
// T = L_max + 2 positions (row b * T + t, see nn/conv1d.hpp):
//   x_in[0]   = [h; h]                                        (no dropout)
//   x_in[t]   = [dropout(emb(u_t)); h],  u_1 = <go>, u_t = w_{t-1} (t = 2..L+1), <pad> after
//   x_0       = Conv1x1(2E -> F)(x_in)
//   per dilation d (one residual bottleneck block each, no dropout inside the stack):
//     r1 = relu(BN1(Conv1x1(x)))                     positions [0, T)
//     r2 = relu(BN2(Conv3_d(r1)))                     causal: r2[t] sees r1[t-2d], r1[t-d], r1[t]
//     r3 = relu(BN3(Conv1x1(r2)))
//     x  = x + r3[0, T)
//   logits[t] = Linear(F -> V)(x[t]) for t = 1..L+1 (position 0's output is dropped),
//   rec[b] = sum_{t=1..L+1} -log softmax(logits[t])[y_t],  y = w_1..w_L, <eos>.
// Only the L+1 real targets of each sentence enter rec; padded positions never do. A
// bucketed batch (core/batch.hpp) uses the same T = L_max + 2 layout, so its results equal
// the packed batch's.
//
// BatchNorm statistics (training mode) are taken over every position of the padded batch,
// padded positions included (they hold [emb(<pad>); h] at the input), as the authors'
// PyTorch code does (reference.md §6). That code runs the kernel-3 convolution with
// padding 2d on both sides and drops the last 2d steps only at the end of the block, so BN2
// and BN3 also see the 2d trailing positions t = T..T+2d-1 of every sentence (outputs that
// read zero padding past the end). With `tail_in_batch_stats` (the default) this module does
// the same: BN1 averages over B*T rows, BN2 and BN3 over B*(T+2d). Setting it false keeps
// every block at B*T rows. Either way the loss of real tokens never reads a later position,
// and in evaluation mode (running statistics) the two are identical, so evaluation skips
// the tail.
//
// Parameters (PyTorch initialisation: U(+-1/sqrt(fan_in)) for convolutions and the output
// layer; BN weight 1, bias 0, running mean 0, variance 1):
//   NAME.conv_in.{weight (F, 2E, 1), bias (F)}
//   NAME.blocks.i.conv1 (F, F, 1), .bn1, .conv2 (F, F, 3) dilation d_i, .bn2, .conv3 (F, F, 1), .bn3
//   NAME.out.{weight (V, F), bias (V)}
// F = config.cnn_channels, d_i = config.cnn_dilations (presets: PTB [1,2,4,8,16] F=256;
// Yelp [1,2,4,8,16]x2 F=128; Yahoo [1,2,4,8,16]x2 F=256). The embedding is the model's shared
// table, passed in; dropout p = config.dropout applies to the word embeddings only.
//
// forward (training: dropout masks from ctx.rng, BN batch statistics and running-statistics
// update; evaluation: neither) requires h (B, E) in the batch's sorted order and writes
// rec (B, 1). loss writes the same rec keeping nothing for backward (one set of block
// buffers, x updated in place, the vocabulary layer in chunks of rows; in evaluation mode
// the sentences in groups of similar length, each group padded to its own longest): what
// evaluation calls. backward, after the forward of the same batch, accumulates into the decoder's
// parameters, the embedding table and dh (B, E), given drec (B).
//
// decode(ctx, ar, emb, h, max_len, temperature): one sentence per row of h (B, E), in
// evaluation semantics (BN running statistics, no dropout; ctx.training is set false for
// the call and restored). Up to max_len steps; the <unk> logit (id 3) is masked.
// temperature <= 0: greedy argmax; otherwise each token is drawn from
// softmax(logits / temperature) with one uniform per sentence per step from ctx.rng
// (greedy draws nothing). Token choice and cutting are the shared decode_ops<B> kernels
// (backend/cpu/decode_ops.hpp), the same as Decoder<GRU>::decode. Decoding is incremental:
// each step computes only the new position, keeping each block's r1 history for the
// dilated taps; in evaluation mode every position depends only on earlier ones, so this
// equals the authors' re-running of the whole stack on the growing prefix. The authors
// run all max_len steps; stopping once every row has produced <eos> gives the same result,
// since rows are independent in evaluation mode and everything after a row's first <eos> is
// cut. The cut is the authors' strip_eos (reference.md §5): tokens before the first <eos>,
// keeping at least one token, so a sentence whose first token is <eos> comes back as
// {<eos>}; without <eos> all max_len tokens are returned.
#pragma once
#include <algorithm>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../backend/conv_ops.hpp"
#include "../backend/cpu/decode_ops.hpp"
#include "../config.hpp"
#include "../core/batch.hpp"
#include "../core/error.hpp"
#include "../nn/batch_norm.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/dropout.hpp"
#include "../nn/embedding.hpp"
#include "../nn/linear.hpp"
#include "../nn/vocab_loss.hpp"
#include "../policies.hpp"

namespace couplevae {

template <>
struct Decoder<DilatedCNN> {
  static constexpr const char* name = "cnn";

  template <class T, class B>
  struct module {
    struct Block {
      nn::Conv1d<T, B> conv1, conv2, conv3;
      nn::BatchNorm<T, B> bn1, bn2, bn3;
      int dilation = 1;
    };

    nn::Conv1d<T, B> conv_in;
    std::vector<Block> blocks;
    nn::Linear<T, B> out;
    nn::Dropout<T, B> emb_drop;
    int E = 0, F = 0, V = 0;
    bool tail_in_batch_stats = true;
    int group_rows = 32;  // evaluation's loss: the fewest sentences of a length group

    struct BlockCache {
      Buffer<T, B> x, r1, r2, r3;  // block input (B*T, F); stage outputs after BN and ReLU
      typename nn::Conv1d<T, B>::Cache c1, c2, c3;
      typename nn::BatchNorm<T, B>::Cache n1, n2, n3;
    };
    struct Cache {
      int batch = 0, steps = 0;
      bool for_backward = false;  // forward (true) or loss (false) filled it
      bool tail = false;          // the blocks ran the BN tail (training with tail_in_batch_stats)
      std::vector<int32_t> tokens;     // (B*(T-1)) input ids of positions 1.. (<pad> after the end)
      std::vector<int32_t> source;  // the padded layout's row of each of the batch's output rows
      // The input ids, readable by B's kernels (backend_ids).
      Buffer<int32_t, B> tokens_b;
      const int32_t* tokens_d = nullptr;
      typename nn::VocabLoss<T, B>::Cache vocab;  // its logits hold the probabilities
      Buffer<T, B> Em, X, x, dx, dX, dEm, g, dq, dp, dr;
      typename nn::Conv1d<T, B>::Cache c_in;
      typename nn::Dropout<T, B>::Cache drop;
      std::vector<BlockCache> blocks;
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, const Config& cfg)
        : conv_in(ar, name + ".conv_in", 2 * cfg.embed, cfg.cnn_channels, 1),
          emb_drop(cfg.dropout),
          E(cfg.embed),
          F(cfg.cnn_channels),
          V(cfg.vocab_size) {
      require(!cfg.cnn_dilations.empty(), "decoder '" + name + "': cnn_dilations is empty");
      for (size_t i = 0; i < cfg.cnn_dilations.size(); ++i) {
        const int d = cfg.cnn_dilations[i];
        const std::string p = name + ".blocks." + std::to_string(i);
        Block bl;
        bl.dilation = d;
        bl.conv1 = nn::Conv1d<T, B>(ar, p + ".conv1", F, F, 1);
        bl.bn1 = nn::BatchNorm<T, B>(ar, p + ".bn1", F);
        bl.conv2 = nn::Conv1d<T, B>(ar, p + ".conv2", F, F, 3, d);
        bl.bn2 = nn::BatchNorm<T, B>(ar, p + ".bn2", F);
        bl.conv3 = nn::Conv1d<T, B>(ar, p + ".conv3", F, F, 1);
        bl.bn3 = nn::BatchNorm<T, B>(ar, p + ".bn3", F);
        blocks.push_back(bl);
      }
      out = nn::Linear<T, B>(ar, name + ".out", F, V);
    }

    // rec (B, 1): per-sentence summed cross-entropy. Keeps what backward needs.
    void forward(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b, View<T> h,
                 View<T> rec, Cache& c) const {
      run(ctx, ar, emb, b, h, rec, c, /*for_backward=*/true);
    }
    // The same rec without what backward needs (evaluation): the blocks share one set of
    // buffers and update x in place, and the vocabulary layer runs in chunks of rows, so
    // memory stays bounded for the large batches of importance sampling.
    // In evaluation mode nothing reads a padded position (running statistics, causal
    // convolutions), so the sentences run in groups of similar length, each group with its
    // own T (length_groups): the same rec, with less padding computed.
    void loss(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b, View<T> h,
              View<T> rec, Cache& c) const {
      if (ctx.training) return run(ctx, ar, emb, b, h, rec, c, /*for_backward=*/false);
      const auto groups = length_groups(b.lengths);
      if (groups.size() == 1) return run(ctx, ar, emb, b, h, rec, c, false);
      for (auto [r0, r1] : groups) {
        std::vector<int> rows(size_t(r1 - r0));
        std::iota(rows.begin(), rows.end(), r0);
        run(ctx, ar, emb, select_rows(b, rows), h.block(r0, r1 - r0), rec.block(r0, r1 - r0), c, false);
      }
    }
    // loss's groups [r0, r1) of the sorted rows: a group takes rows while it has fewer than
    // group_rows of them or their own T = L + 2 is at least 3/4 of the group's first.
    std::vector<std::pair<int, int>> length_groups(const std::vector<int>& lengths) const {
      std::vector<std::pair<int, int>> g;
      const int n = int(lengths.size());
      for (int r0 = 0, r = 0; r0 < n; r0 = r) {
        r = r0 + 1;
        while (r < n && (r - r0 < group_rows || 4 * (lengths[r] + 2) >= 3 * (lengths[r0] + 2))) ++r;
        g.push_back({r0, r});
      }
      return g;
    }

    void backward(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b, View<T> h,
                  View<T> drec, View<T> dh, Cache& c) const {
      (void)h;
      require(c.for_backward, "Decoder<DilatedCNN>::backward: needs forward (not loss) of the batch first");
      const Packing& pk = b.dec;
      const int nb = pk.batch, Tp = layout_steps(b), N = nb * Tp;
      const int last = int(blocks.size());
      View<T> dx = c.dx.zeros(N, F);
      nn::VocabLoss<T, B>::backward(ctx, ar, out, block_input(c, last, N), drec, dx, c.vocab);
      for (size_t i = blocks.size(); i-- > 0;) block_backward(ctx, ar, i, dx, nb, Tp, c.blocks[i], c);
      View<T> X{c.X.data(), N, 2 * E};
      View<T> dX = c.dX.zeros(N, 2 * E);
      conv_in.backward(ctx, ar, X, nb, Tp, Tp, dx, dX, c.c_in);
      const int ne = nb * (Tp - 1);
      View<T> dEm = c.dEm.shape(ne, E);
      conv_ops<B>::cnn_input_backward(nb, Tp, E, dX.data, dEm.data, dh.data);
      emb_drop.backward_inplace(dEm, c.drop);
      emb.backward(ctx, ar, c.tokens_d, ne, dEm.data, E);
    }

    std::vector<std::vector<int32_t>> decode(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb,
                                             View<T> h, int max_len, double temperature) const {
      require(h.cols == E, "Decoder<DilatedCNN>::decode: h has " + std::to_string(h.cols) +
                               " columns, expected embed = " + std::to_string(E));
      require(max_len >= 1, "Decoder<DilatedCNN>::decode: max_len must be >= 1 (got " + std::to_string(max_len) + ")");
      const int nb = h.rows, P = max_len + 1;
      if (nb == 0) return {};
      struct Restore {
        Context<B>& ctx;
        bool training;
        ~Restore() { ctx.training = training; }
      } restore{ctx, ctx.training};
      ctx.training = false;

      Buffer<T, B> Xb, Emb, xb, yb, zb, logitsb;
      std::vector<Buffer<T, B>> hist(blocks.size());
      View<T> X = Xb.shape(nb, 2 * E), Em = Emb.shape(nb, E), x = xb.shape(nb, F), y = yb.shape(nb, F),
              z = zb.shape(nb, F), logits = logitsb.shape(nb, V);
      std::vector<View<T>> r1(blocks.size());
      for (size_t i = 0; i < blocks.size(); ++i) r1[i] = hist[i].zeros(nb * P, F);
      typename nn::Conv1d<T, B>::Cache cc;
      typename nn::BatchNorm<T, B>::Cache bc;
      std::vector<int32_t> tokens(size_t(nb), go_id), finished(size_t(nb), 0), all;
      Buffer<int32_t, B> tokens_b;
      int steps = 0;

      for (int t = 0; t < P; ++t) {
        if (t == 0) {
          conv_ops<B>::cnn_step_input(nb, E, h.data, static_cast<const T*>(nullptr), X.data);
        } else {
          emb.forward(ctx, ar, backend_ids(tokens, tokens_b), nb, Em.data, E);
          conv_ops<B>::cnn_step_input(nb, E, h.data, Em.data, X.data);
        }
        conv_in.forward(ctx, ar, X, nb, 1, 1, x, cc);
        for (size_t i = 0; i < blocks.size(); ++i) {
          const Block& bl = blocks[i];
          bl.conv1.forward(ctx, ar, x, nb, 1, 1, y, cc);
          norm_relu(ctx, ar, bl.bn1, y, bc);
          ops<B>::copy2d(y.data, nb, F, F, r1[i].row(t), P * F);  // r1 history, row b * P + t
          bl.conv2.forward(ctx, ar, r1[i], nb, P, t, t + 1, y, cc);
          norm_relu(ctx, ar, bl.bn2, y, bc);
          bl.conv3.forward(ctx, ar, y, nb, 1, 1, z, cc);
          norm_relu(ctx, ar, bl.bn3, z, bc);
          ops<B>::axpy(z.size(), T(1), z.data, x.data);
        }
        if (t == 0) continue;
        out.forward(ctx, ar, x, logits);
        const int running = decode_ops<B>::pick_tokens(ctx.rng, logits.data, nb, V, unk_id, temperature, eos_id,
                                                       tokens.data(), finished.data());
        all.insert(all.end(), tokens.begin(), tokens.end());
        ++steps;
        if (running == 0) break;  // every row has its <eos>: later tokens would be cut anyway
      }
      std::vector<std::vector<int32_t>> result;
      decode_ops<B>::cut_at_eos(all.data(), steps, nb, eos_id, result);
      return result;
    }

   private:
    void run(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b, View<T> h,
             View<T> rec, Cache& c, bool for_backward) const {
      const Packing& pk = b.dec;
      const int nb = pk.batch, Tp = layout_steps(b), N = nb * Tp;
      index(pk, b, c);
      // Input sequence: [h; h], [dropout(emb(u_t)); h].
      const int ne = nb * (Tp - 1);
      View<T> Em = c.Em.shape(ne, E);
      emb.forward(ctx, ar, c.tokens_d, ne, Em.data, E);
      emb_drop.forward(ctx, Em, Em, c.drop);
      View<T> X = c.X.shape(N, 2 * E);
      conv_ops<B>::cnn_input(nb, Tp, E, h.data, Em.data, X.data);
      // Convolution stack: x_i in block i's cache (kept for backward), or one buffer
      // updated in place with block 0's cache as every block's scratch.
      c.for_backward = for_backward;
      c.tail = tail_in_batch_stats && ctx.training;
      c.blocks.resize(for_backward ? blocks.size() : 1);
      View<T> x = block_input(c, 0, N);
      conv_in.forward(ctx, ar, X, nb, Tp, Tp, x, c.c_in);
      for (size_t i = 0; i < blocks.size(); ++i) {
        View<T> xo = for_backward ? block_input(c, i + 1, N) : x;
        block_forward(ctx, ar, i, x, xo, nb, Tp, c.tail, c.blocks[for_backward ? i : 0]);
        x = xo;
      }
      // Output: the batch's output rows (position 0 and the padding dropped).
      if (for_backward)
        nn::VocabLoss<T, B>::forward(ctx, ar, out, b.outputs, x, rec, c.vocab, &c.source);
      else
        nn::VocabLoss<T, B>::loss_only(ctx, ar, out, b.outputs, x, rec, c.vocab, &c.source);
    }

    // Steps of the dilated convolution's output in block i: T (+ 2d with the tail).
    int long_steps(size_t i, int Tp, bool tail) const { return Tp + (tail ? blocks[i].conv2.reach() : 0); }

    // x_0 lives in block 0's cache, x_i (input of block i) in block i's, the last in c.x.
    View<T> block_input(Cache& c, size_t i, int N) const {
      return i < blocks.size() ? c.blocks[i].x.shape(N, F) : c.x.shape(N, F);
    }

    void norm_relu(Context<B>& ctx, Arena<T, B>& ar, const nn::BatchNorm<T, B>& bn, View<T> y,
                   typename nn::BatchNorm<T, B>::Cache& bc) const {
      bn.forward(ctx, ar, y, y, bc);
      ops<B>::relu_forward(y.size(), y.data, y.data);
    }

    void block_forward(Context<B>& ctx, Arena<T, B>& ar, size_t i, View<T> x, View<T> xo, int nb, int Tp, bool tail,
                       BlockCache& bc) const {
      const Block& bl = blocks[i];
      const int TL = long_steps(i, Tp, tail), N = nb * Tp, NL = nb * TL;
      View<T> r1 = bc.r1.shape(N, F), r2 = bc.r2.shape(NL, F), r3 = bc.r3.shape(NL, F);
      bl.conv1.forward(ctx, ar, x, nb, Tp, Tp, r1, bc.c1);
      norm_relu(ctx, ar, bl.bn1, r1, bc.n1);
      bl.conv2.forward(ctx, ar, r1, nb, Tp, TL, r2, bc.c2);
      norm_relu(ctx, ar, bl.bn2, r2, bc.n2);
      bl.conv3.forward(ctx, ar, r2, nb, TL, TL, r3, bc.c3);
      norm_relu(ctx, ar, bl.bn3, r3, bc.n3);
      if (xo.data != x.data) ops<B>::copy(x.data, x.size(), xo.data);
      conv_ops<B>::add_steps(nb, Tp, F, r3.data, TL, xo.data, Tp);
    }

    // dx (B*T, F): on entry dL/d(block output), on exit dL/d(block input) (the residual
    // identity plus the block's path).
    void block_backward(Context<B>& ctx, Arena<T, B>& ar, size_t i, View<T> dx, int nb, int Tp, BlockCache& bc,
                        Cache& c) const {
      const Block& bl = blocks[i];
      const int TL = long_steps(i, Tp, c.tail), N = nb * Tp, NL = nb * TL;
      View<T> x{bc.x.data(), N, F}, r1{bc.r1.data(), N, F}, r2{bc.r2.data(), NL, F}, r3{bc.r3.data(), NL, F};
      View<T> g = c.g.zeros(NL, F);  // d r3 (the trailing steps get no direct gradient)
      conv_ops<B>::add_steps(nb, Tp, F, dx.data, Tp, g.data, TL);
      View<T> dq = c.dq.zeros(NL, F), dp = c.dp.zeros(NL, F);
      ops<B>::relu_backward_acc(g.size(), r3.data, g.data, dq.data);
      bl.bn3.backward(ctx, ar, dq, dp, bc.n3);
      g = c.g.zeros(NL, F);  // d r2
      bl.conv3.backward(ctx, ar, r2, nb, TL, TL, dp, g, bc.c3);
      dq = c.dq.zeros(NL, F);
      dp = c.dp.zeros(NL, F);
      ops<B>::relu_backward_acc(g.size(), r2.data, g.data, dq.data);
      bl.bn2.backward(ctx, ar, dq, dp, bc.n2);
      View<T> dr = c.dr.zeros(N, F);  // d r1
      bl.conv2.backward(ctx, ar, r1, nb, Tp, TL, dp, dr, bc.c2);
      dq = c.dq.zeros(N, F);
      dp = c.dp.zeros(N, F);
      ops<B>::relu_backward_acc(dr.size(), r1.data, dr.data, dq.data);
      bl.bn1.backward(ctx, ar, dq, dp, bc.n1);
      bl.conv1.backward(ctx, ar, x, nb, Tp, Tp, dp, dx, bc.c1);
    }

    // The padded layout's T = L_max + 2, for a bucketed batch too: the convolutions and the
    // BatchNorm statistics see what they see on the packed batch, so the results are equal.
    static int layout_steps(const Batch& b) { return b.lengths.front() + 2; }

    // The input ids and the output rows' positions in the padded layout (rows b * T + t) for
    // this batch, built on the host.
    void index(const Packing& pk, const Batch& b, Cache& c) const {
      const int nb = pk.batch, Tp = layout_steps(b);
      c.batch = nb;
      c.steps = Tp;
      c.tokens.assign(size_t(nb) * (Tp - 1), pad_id);
      std::vector<int32_t> position(size_t(pk.rows - nb), 0);  // layout row of each dec row - nb
      for (int t = 1; t < pk.steps; ++t)
        for (int i = 0; i < pk.active[t]; ++i) {
          if (!pk.real(t, i)) continue;  // padding of a bucketed batch: no output row reads it
          const int r = pk.row(t, i);
          c.tokens[size_t(i) * (Tp - 1) + t - 1] = b.dec_inputs[r];
          position[r - nb] = i * Tp + t;
        }
      const OutputRows& o = b.outputs;
      c.source.resize(size_t(o.count()));
      for (size_t k = 0; k < c.source.size(); ++k) c.source[k] = position[o.identity ? k : size_t(o.source[k])];
      c.tokens_d = backend_ids(c.tokens, c.tokens_b);
    }
  };
};

}  // namespace couplevae
