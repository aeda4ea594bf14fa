// couplevae/decoder/gru.hpp: Decoder<GRU>, the autoregressive GRU decoder p(x|z).
//
// Given the decoding signal h (B, E) (reference.md §4-5):
//   step 0      : input [h; h] from a zero state, no dropout, output discarded
//   steps 1..L+1: input dropout([emb(w_{t-1}); h]) with w_0 = <go>
//   o_t -> dropout -> tanh(W_c o_t + b_c) (E) -> W_v . + b_v (V) -> softmax
//   rec[b] = sum_t -log p(w_t | w_<t, h), targets w_1..w_L, <eos>
// Shapes: X (dec.rows, 2E) packed (core/batch.hpp), states (dec.rows, Hd), logits
// (outputs.count(), V): the vocabulary layer runs on the batch's output rows
// (nn/vocab_loss.hpp). The GRU hidden size Hd is config.dec_hidden() (2H, reference.md §5).
// The embedding is the model's shared table, passed in. forward_each / backward_each run
// one or two such decoders over the same batch side by side (decoder/side_by_side.hpp).
// backward accumulates into the decoder's parameters, the embedding, and dh (B, E), given
// drec (B), the gradient on each sentence's loss.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "../backend/cpu/decode_ops.hpp"
#include "../config.hpp"
#include "../core/batch.hpp"
#include "../nn/dropout.hpp"
#include "../nn/embedding.hpp"
#include "../nn/gru.hpp"
#include "../nn/linear.hpp"
#include "../nn/vocab_loss.hpp"
#include "../policies.hpp"
#include "side_by_side.hpp"

namespace couplevae {

namespace detail {
// The decoding loop of Decoder<GRU> and of the GRU-LM (reference.md §5), from the state s
// (nb, Hd) and input rows X (nb, ld) whose first E columns take emb(w_{t-1}) (the rest stay
// as the caller set them): for t = 1..max_len
//   s = GRU(X, s),  logits = W_v tanh(W_c s + b_c) + b_v,  w_t = decode_ops::pick_tokens
// (<unk> masked; argmax for temperature <= 0, else one uniform per row from ctx.rng),
// stopping once every row has produced <eos>; each row cut at its first <eos>.
// Rows that have produced <eos> leave the computation: after a step that finished some, the
// running rows of X and s are gathered to the front, so a step costs the running rows only
// (a batch of samples whose lengths differ, or one sample that never ends, no longer keeps
// every row to the end). A finished row's later tokens are <eos>. The draws do not change:
// every sampling step takes nb uniforms, and running row j uses the one of its sentence.
template <class T, class B>
std::vector<std::vector<int32_t>> decode_loop(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb,
                                              const nn::GRU<T, B>& rnn, const nn::Linear<T, B>& proj,
                                              const nn::Linear<T, B>& out, View<T> X, View<T> s, int max_len,
                                              double temperature) {
  const int nb = X.rows, V = out.out;
  Buffer<T, B> snb, ab, lb, xb2, sb2;
  Buffer<int32_t, B> tokens_b, keep_b;
  typename nn::GRU<T, B>::Cache scratch;
  View<T> sn = snb.shape(nb, s.cols), A = ab.shape(nb, proj.out), logits = lb.shape(nb, V);
  View<T> X2 = xb2.shape(nb, X.cols), s2 = sb2.shape(nb, s.cols);  // targets of the gathers
  std::vector<int32_t> tokens(size_t(nb), go_id), finished(size_t(nb), 0), keep, all;
  std::vector<int32_t> row(tokens.size());  // sentence of each running row
  std::iota(row.begin(), row.end(), 0);
  std::vector<int32_t> step_tokens(size_t(nb), eos_id);
  all.reserve(size_t(nb) * size_t(std::min(max_len, 64)));
  int steps = 0, n = nb;  // n: running rows, the first n rows of X and s
  for (int t = 1; t <= max_len; ++t) {
    emb.forward(ctx, ar, backend_ids(tokens, tokens_b), n, X.data, X.cols);
    rnn.step(ctx, ar, X.block(0, n), s.block(0, n), sn.block(0, n), scratch);
    std::swap(s, sn);
    proj.forward(ctx, ar, s.block(0, n), A.block(0, n));
    ops<B>::tanh_forward(size_t(n) * A.cols, A.data, A.data);
    out.forward(ctx, ar, A.block(0, n), logits.block(0, n));
    const int running = decode_ops<B>::pick_tokens(ctx.rng, logits.data, n, V, unk_id, temperature, eos_id,
                                                   tokens.data(), finished.data(), nb, row.data());
    for (int j = 0; j < n; ++j) step_tokens[size_t(row[size_t(j)])] = tokens[size_t(j)];
    all.insert(all.end(), step_tokens.begin(), step_tokens.end());  // a finished row's last pick is <eos>
    ++steps;
    if (running == 0) break;
    if (running < n) {
      keep.clear();
      for (int j = 0; j < n; ++j)
        if (!finished[size_t(j)]) keep.push_back(j);
      const int32_t* k = backend_ids(keep, keep_b);
      ops<B>::gather_rows(X.data, X.cols, k, running, X2.data, X2.cols);
      ops<B>::gather_rows(s.data, s.cols, k, running, s2.data, s2.cols);
      std::swap(X, X2);
      std::swap(s, s2);
      for (int j = 0; j < running; ++j) {
        row[size_t(j)] = row[size_t(keep[size_t(j)])];
        tokens[size_t(j)] = tokens[size_t(keep[size_t(j)])];
        finished[size_t(j)] = 0;
      }
      n = running;
    }
  }
  std::vector<std::vector<int32_t>> result;
  decode_ops<B>::cut_at_eos(all.data(), steps, nb, eos_id, result);
  return result;
}
}  // namespace detail

template <>
struct Decoder<GRU> {
  static constexpr const char* name = "gru";

  template <class T, class B>
  struct module {
    nn::GRU<T, B> rnn;
    nn::Linear<T, B> proj, out;
    nn::Dropout<T, B> in_drop, out_drop;
    int E = 0, Hd = 0, V = 0;

    struct Cache {
      Buffer<T, B> X, O, A, dA, dP, dO, dstates, dX;
      typename nn::GRU<T, B>::Cache rnn;
      typename nn::Dropout<T, B>::Cache in_drop, out_drop;
      typename nn::VocabLoss<T, B>::Cache vocab;  // its logits hold the probabilities
      std::vector<int32_t> row_item;  // sentence of each decoder row
      // row_item and the batch's inputs, readable by B's kernels (backend_ids).
      Buffer<int32_t, B> items_b, inputs_b;
      const int32_t *items = nullptr, *inputs = nullptr;
    };

    module() = default;
    module(Arena<T, B>& ar, const std::string& name, const Config& cfg)
        : rnn(ar, name + ".rnn", 2 * cfg.embed, cfg.dec_hidden()),
          proj(ar, name + ".proj", cfg.dec_hidden(), cfg.embed),
          out(ar, name + ".out", cfg.embed, cfg.vocab_size),
          in_drop(cfg.dropout),
          out_drop(cfg.dropout),
          E(cfg.embed),
          Hd(cfg.dec_hidden()),
          V(cfg.vocab_size) {}

    // rec (B, 1): per-sentence summed cross-entropy. Keeps what backward needs.
    void forward(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                 View<T> h, View<T> rec, Cache& c) const {
      const Run r{*this, h, rec, View<T>{}, c};
      run_each(ctx, ar, emb, b, {&r, 1}, /*for_backward=*/true);
    }
    // The same rec without what backward needs: the vocabulary layer runs in chunks of
    // rows, so memory stays bounded for large evaluation batches. Used for evaluation.
    void loss(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b, View<T> h,
              View<T> rec, Cache& c) const {
      const Run r{*this, h, rec, View<T>{}, c};
      run_each(ctx, ar, emb, b, {&r, 1}, /*for_backward=*/false);
    }

    void backward(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                  View<T> h, View<T> drec, View<T> dh, Cache& c) const {
      const Run r{*this, h, drec, dh, c};
      backward_each(ctx, ar, emb, b, {&r, 1});
    }

    // forward and backward of one or two decoders over the same batch (decoder/
    // side_by_side.hpp), their recurrences stepping together (nn::GRU::run_steps). Each run
    // draws its dropout masks (input, then output) before the recurrence, in the runs'
    // order, which is the order forward draws them in: the same masks.
    using Run = DecoderRun<module, T>;
    static void forward_each(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                             std::span<const Run> runs) {
      run_each(ctx, ar, emb, b, runs, /*for_backward=*/true);
    }
    static void backward_each(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                              std::span<const Run> runs) {
      const int n = check_runs(runs);
      GruBackwardPass<T> p[2];
      typename nn::GRU<T, B>::Cache* cs[2] = {};
      for (int i = 0; i < n; ++i) p[i] = runs[i].dec.backward_begin(ctx, ar, b, runs[i].v, runs[i].c), cs[i] = &runs[i].c.rnn;
      nn::GRU<T, B>::run_steps(b.dec, p, cs, n);
      for (const Run& r : runs) r.dec.backward_end(ctx, ar, emb, b, r.dh, r.c);
    }

    // Decoding (reference.md §5 "Greedy decoding"), evaluation mode whatever ctx.training
    // says (no dropout), all rows of h (B, E) in one batch:
    //   s_0 = GRU([h; h], 0);  w_0 = <go>
    //   o_t = s_t = GRU([emb(w_{t-1}); h], s_{t-1}),  logits_t = W_v tanh(W_c o_t + b_c) + b_v
    //   logits_t[<unk>] = -inf;  w_t = argmax (temperature <= 0) or ~ softmax(logits_t / temperature)
    // for t = 1..max_len, stopping early once every row has produced <eos>. Each row is cut
    // at its first <eos> and is never empty (a first <eos> is kept: {<eos>}, the authors'
    // strip_eos). Sampling takes one uniform per row and step from ctx.rng
    // (backend/cpu/decode_ops.hpp); greedy decoding draws nothing. Results follow h's rows.
    std::vector<std::vector<int32_t>> decode(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb,
                                             View<T> h, int max_len, double temperature) const {
      require(h.cols == E, "Decoder<GRU>::decode: h has " + std::to_string(h.cols) + " columns, expected embed = " +
                               std::to_string(E));
      require(max_len >= 1, "Decoder<GRU>::decode: max_len must be >= 1 (got " + std::to_string(max_len) + ")");
      require(!std::isnan(temperature), "Decoder<GRU>::decode: temperature is NaN");
      const int nb = h.rows, I = 2 * E;
      if (nb == 0) return {};
      Buffer<T, B> xb, sb, snb;
      typename nn::GRU<T, B>::Cache scratch;
      View<T> X = xb.shape(nb, I), s = sb.zeros(nb, Hd), s1 = snb.shape(nb, Hd);
      ops<B>::copy2d(h.data, nb, E, h.cols, X.data, I);       // step 0: [h; h]
      ops<B>::copy2d(h.data, nb, E, h.cols, X.data + E, I);   // every step: [.; h]
      rnn.step(ctx, ar, X, s, s1, scratch);
      return detail::decode_loop(ctx, ar, emb, rnn, proj, out, X, s1, max_len, temperature);
    }

   private:
    static int check_runs(std::span<const Run> runs) {
      require(runs.size() <= 2, "Decoder<GRU>: at most two decoders run side by side (got " +
                                    std::to_string(runs.size()) + ")");
      for (const Run& r : runs)
        require(r.dec.Hd == runs[0].dec.Hd, "Decoder<GRU>: decoders side by side need the same hidden size");
      return int(runs.size());
    }

    static void run_each(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                         std::span<const Run> runs, bool for_backward) {
      const int n = check_runs(runs);
      GruForwardPass<T> p[2];
      typename nn::GRU<T, B>::Cache* cs[2] = {};
      for (int i = 0; i < n; ++i) p[i] = runs[i].dec.forward_begin(ctx, ar, emb, b, runs[i].h, runs[i].c), cs[i] = &runs[i].c.rnn;
      nn::GRU<T, B>::run_steps(b.dec, p, cs, n);
      for (const Run& r : runs) r.dec.forward_end(ctx, ar, b, r.v, r.c, for_backward);
    }

    // The decoder's inputs X (dec.rows, 2E), its dropout masks, and the recurrence's pass.
    GruForwardPass<T> forward_begin(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb,
                                    const Batch& b, View<T> h, Cache& c) const {
      const Packing& pk = b.dec;
      const int n = pk.rows, nb = pk.batch, nout = n - nb;
      c.row_item.resize(n);
      for (int t = 0; t < pk.steps; ++t)
        for (int i = 0; i < pk.active[t]; ++i) c.row_item[pk.row(t, i)] = i;
      c.items = backend_ids(c.row_item, c.items_b);
      c.inputs = backend_ids(b.dec_inputs, c.inputs_b);
      View<T> X = c.X.shape(n, 2 * E);
      emb.forward(ctx, ar, c.inputs + nb, nout, X.row(nb), 2 * E);
      ops<B>::gather_rows(h.data, E, c.items, nb, X.data, 2 * E);       // step 0: [h; .]
      ops<B>::gather_rows(h.data, E, c.items, n, X.data + E, 2 * E);    // every step: [.; h]
      in_drop.forward(ctx, X.block(nb, nout), X.block(nb, nout), c.in_drop);
      out_drop.draw(ctx, nout, Hd, c.out_drop);
      return rnn.forward_begin(ar, X, pk, c.rnn);
    }
    // After the recurrence: the output layers and rec.
    void forward_end(Context<B>& ctx, Arena<T, B>& ar, const Batch& b, View<T> rec, Cache& c,
                     bool for_backward) const {
      const Packing& pk = b.dec;
      const int nb = pk.batch, nout = pk.rows - nb;
      rnn.forward_end(pk, c.rnn);
      View<T> O = c.O.shape(nout, Hd);
      out_drop.apply(View<T>{c.rnn.states.data() + size_t(nb) * Hd, nout, Hd}, O, c.out_drop);
      View<T> A = c.A.shape(nout, E);
      proj.forward(ctx, ar, O, A);
      ops<B>::tanh_forward(A.size(), A.data, A.data);
      if (for_backward)
        nn::VocabLoss<T, B>::forward(ctx, ar, out, b.outputs, A, rec, c.vocab);
      else
        nn::VocabLoss<T, B>::loss_only(ctx, ar, out, b.outputs, A, rec, c.vocab);
    }

    // Backward to the recurrence's states: the output layers given drec (B, 1).
    GruBackwardPass<T> backward_begin(Context<B>& ctx, Arena<T, B>& ar, const Batch& b, View<T> drec,
                                      Cache& c) const {
      const Packing& pk = b.dec;
      const int n = pk.rows, nb = pk.batch, nout = n - nb;
      View<T> A{c.A.data(), nout, E}, O{c.O.data(), nout, Hd};
      View<T> dA = c.dA.zeros(nout, E), dP = c.dP.zeros(nout, E), dO = c.dO.zeros(nout, Hd);
      nn::VocabLoss<T, B>::backward(ctx, ar, out, A, drec, dA, c.vocab);
      ops<B>::tanh_backward_acc(A.size(), A.data, dA.data, dP.data);
      proj.backward(ctx, ar, O, dP, dO);
      View<T> dst = c.dstates.zeros(n, Hd);
      out_drop.backward(dO, dst.block(nb, nout), c.out_drop);
      return rnn.backward_begin(ar, pk, dst, View<T>{}, c.rnn);
    }
    // After the recurrence: the GRU's weights, the embedding and dh (B, E).
    void backward_end(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                      View<T> dh, Cache& c) const {
      const Packing& pk = b.dec;
      const int n = pk.rows, nb = pk.batch, nout = n - nb;
      View<T> X{c.X.data(), n, 2 * E};
      View<T> dX = c.dX.zeros(n, 2 * E);
      rnn.backward_end(ar, X, pk, dX, c.rnn);
      in_drop.backward_inplace(dX.block(nb, nout), c.in_drop);
      emb.backward(ctx, ar, c.inputs + nb, nout, dX.row(nb), 2 * E);
      ops<B>::scatter_add_rows(dX.data, 2 * E, c.items, nb, E, dh.data);
      ops<B>::scatter_add_rows(dX.data + E, 2 * E, c.items, n, E, dh.data);
    }
  };
};

}  // namespace couplevae
