// couplevae/model/lm.hpp: LanguageModel<Decoder<GRU>, Backend, Scalar>, the GRU-LM baseline.
//
// The paper's "GRU-LM" row (reference.md §5 "GRU-LM baseline", CODE Modules/lm.py): the
// decoder of §5 with no latent input.
//   x_t   = dropout(emb(w_{t-1})),  w_0 = <go>                       (N, E)
//   o_t   = GRU(x_t, o_{t-1}),      o_0 = 0, hidden Hd = 2H           (N, Hd)
//   logits_t = W_v tanh(W_c dropout(o_t) + b_c) + b_v                 (N, V)
//   rec[b] = sum_{t=1}^{L_b+1} -log softmax(logits_t)[w_t],  w_{L+1} = <eos>
//   L = mean_b rec[b]    (loss = rec; kl = reg = 0)
// Parameters: "embedding.weight" (V, E) ~ N(0, 1) (§1), "decoder.rnn.*_l0" (input E),
// "decoder.proj.*" (E, Hd), "decoder.out.*" (V, E), PyTorch default initialisation.
//
// Packing: the Batch's decoder packing (core/batch.hpp) has an extra step 0 per sentence
// (the [h;h] step) that the LM does not use. The LM runs n_b = L_b + 1 steps
// (Packing::drop_first_step, padded for a bucketed batch); with step 0 removed the decoder
// packing is exactly this one shifted by B rows, so the LM reads its inputs and targets from
// batch.dec_inputs / dec_targets starting at row B and needs no copy.
//
// The model contract of Model (model/model.hpp): forward(ctx, batch, step) keeps what
// backward(ctx) needs; backward accumulates dL/dtheta into arena().grads() (the caller
// zeroes). Dropout noise comes from ctx.rng (restore ctx.rng.position to replay a step).
// importance_weights() returns the exact log-likelihood (§13 "GRU-LM: exact NLL"):
// log_weight = -rec for every sample, log_ratio = 0; so every sample is the same and the
// importance-sampled NLL equals the exact one (eval/nll.hpp runs one sample).
// decode(ctx, samples, max_len, temperature) generates text from the LM (§5 decoding rule:
// <unk> masked, greedy or sampled, cut at the first <eos>, never empty).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../backend/cpu/decode_ops.hpp"
#include "../backend/tags.hpp"
#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../decoder/gru.hpp"
#include "../nn/dropout.hpp"
#include "../nn/embedding.hpp"
#include "../nn/gru.hpp"
#include "../nn/linear.hpp"
#include "../nn/vocab_loss.hpp"
#include "../policies.hpp"
#include "model.hpp"

namespace couplevae {

template <class D, class B = cpu, class T = float>
class LanguageModel {
  static_assert(std::is_same_v<D, Decoder<GRU>>,
                "couplevae: LanguageModel is the GRU-LM baseline (reference.md §5); use LanguageModel<Decoder<GRU>>");
  static_assert(is_backend_v<B>,
                "couplevae: LanguageModel's second argument is the backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(std::is_floating_point_v<T>, "couplevae: LanguageModel's scalar must be float or double");

 public:
  using scalar = T;
  using backend = B;
  using decoder_policy = D;
  static constexpr bool has_latent = false;
  static constexpr bool is_coupled = false;
  static constexpr bool exact_likelihood = true;

  LanguageModel(const Config& cfg, uint64_t seed) : cfg_(cfg) {
    cfg_.validate();
    const Config& c = cfg_;
    emb = nn::Embedding<T, B>(arena_, "embedding", c.vocab_size, c.embed);
    in_drop = nn::Dropout<T, B>(c.dropout);
    rnn = nn::GRU<T, B>(arena_, "decoder.rnn", c.embed, c.dec_hidden());
    out_drop = nn::Dropout<T, B>(c.dropout);
    proj = nn::Linear<T, B>(arena_, "decoder.proj", c.dec_hidden(), c.embed);
    out = nn::Linear<T, B>(arena_, "decoder.out", c.embed, c.vocab_size);
    arena_.finalize();
    arena_.initialise(seed);
  }
  LanguageModel(const LanguageModel&) = delete;
  LanguageModel& operator=(const LanguageModel&) = delete;

  const Config& config() const { return cfg_; }
  Arena<T, B>& arena() { return arena_; }
  const Arena<T, B>& arena() const { return arena_; }
  void zero_grad() { arena_.zero_grad(); }

  // "lm-gru", the structure a checkpoint must match.
  static std::string structure() { return std::string("lm-") + D::name; }

  // The loss parts (model/losses.hpp): rec only.
  PendingLosses forward_async(Context<B>& ctx, const Batch& batch, long /*step*/) {
    const int nb = batch.size();
    double* parts = parts_buf.zeros(1, loss_parts).data;
    run(ctx, batch);
    ops<B>::sum_into(rec_buf.data(), size_t(nb), 1.0 / nb, parts + part_rec);
    PendingLosses l;
    l.parts = parts;
    l.sentences = nb;
    l.tokens = batch.target_tokens();
    return l;
  }
  Losses forward(Context<B>& ctx, const Batch& batch, long step) {
    return read_losses(parts_buf, forward_async(ctx, batch, step));
  }

  void backward(Context<B>& ctx) {
    const Batch& b = *batch_;
    const int nb = b.size(), n = pk_.rows, E = cfg_.embed, Hd = cfg_.dec_hidden();
    const int32_t* inputs = inputs_ + nb;
    View<T> drec = drec_buf.shape(nb, 1);
    ops<B>::fill(drec.data, size_t(nb), T(1.0 / nb));
    View<T> A{a_buf.data(), n, E}, O{o_buf.data(), n, Hd};
    View<T> dA = da_buf.zeros(n, E), dP = dp_buf.zeros(n, E), dO = do_buf.zeros(n, Hd);
    nn::VocabLoss<T, B>::backward(ctx, arena_, out, A, drec, dA, vocab_cache);
    ops<B>::tanh_backward_acc(A.size(), A.data, dA.data, dP.data);
    proj.backward(ctx, arena_, O, dP, dO);
    View<T> dst = dst_buf.zeros(n, Hd);
    out_drop.backward(dO, dst, out_drop_cache);
    View<T> X{x_buf.data(), n, E};
    View<T> dX = dx_buf.zeros(n, E);
    rnn.backward(ctx, arena_, X, pk_, dst, View<T>{}, dX, rnn_cache);
    in_drop.backward_inplace(dX, in_drop_cache);
    emb.backward(ctx, arena_, inputs, n, dX.data, E);
  }

  // The exact log-likelihood, the same for every sample: log_weight = -rec, log_ratio = 0.
  // Evaluation mode is the caller's choice (ctx.training = false for the paper's numbers);
  // the forward runs once whatever `samples` is, and draws no noise (`first`, the batch's
  // first sentence in its corpus, is Model's argument and unused here).
  ImportanceTerms importance_weights(Context<B>& ctx, const Batch& batch, int samples, long /*first*/ = 0) {
    require(samples >= 1, "LanguageModel::importance_weights: samples must be >= 1");
    ImportanceTerms it;
    it.batch = batch.size();
    it.samples = samples;
    it.log_weight.resize(size_t(it.batch) * samples);
    it.log_ratio.assign(it.log_weight.size(), 0.0);
    it.rec.resize(it.log_weight.size());
    run(ctx, batch);
    const auto rec = rec_buf.to_host();
    for (int i = 0; i < it.batch; ++i)
      for (int s = 0; s < samples; ++s) {
        const size_t k = size_t(i) * samples + s;
        it.rec[k] = double(rec[size_t(i)]);
        it.log_weight[k] = -double(rec[size_t(i)]);
      }
    return it;
  }

  // Per-sentence summed cross-entropy of the last forward, (B, 1) in the batch's sorted order.
  View<T> sentence_loss() { return View<T>{rec_buf.data(), batch_ ? batch_->size() : 0, 1}; }
  // softmax(logits) of the last forward, (batch.outputs.count(), V): row k predicts
  // outputs.target[k] of sorted sentence outputs.item[k]. For a packed batch that is the LM's
  // packing: row(t, i) predicts token t + 1 of sentence i (<eos> at t = L_i). Valid until
  // backward, which turns them into logit gradients.
  View<T> probabilities() { return View<T>{vocab_cache.logits.data(), vocab_cache.count, cfg_.vocab_size}; }
  const Packing& packing() const { return pk_; }

  // Generates `samples` sentences (reference.md §5 decoding rule, evaluation mode whatever
  // ctx.training says): o_0 = 0, w_0 = <go>, o_t = GRU(emb(w_{t-1}), o_{t-1}),
  // logits_t = W_v tanh(W_c o_t + b_c) + b_v with logits_t[<unk>] = -inf; w_t = argmax
  // (temperature <= 0) or ~ softmax(logits_t / temperature) with one uniform per row and step
  // from ctx.rng. At most max_len tokens, stopping once every row has produced <eos>; each
  // row cut at its first <eos>, never empty (a first <eos> is kept as {<eos>}).
  std::vector<std::vector<int32_t>> decode(Context<B>& ctx, int samples, int max_len, double temperature) {
    require(samples >= 0, "LanguageModel::decode: samples must be >= 0");
    require(max_len >= 1, "LanguageModel::decode: max_len must be >= 1 (got " + std::to_string(max_len) + ")");
    require(!std::isnan(temperature), "LanguageModel::decode: temperature is NaN");
    if (samples == 0) return {};
    Buffer<T, B> xb, sb;
    View<T> X = xb.shape(samples, cfg_.embed), s = sb.zeros(samples, cfg_.dec_hidden());
    return detail::decode_loop(ctx, arena_, emb, rnn, proj, out, X, s, max_len, temperature);
  }

  // Parts, public for users who assemble their own loops and for the analysis tools.
  nn::Embedding<T, B> emb;
  nn::Dropout<T, B> in_drop, out_drop;
  nn::GRU<T, B> rnn;
  nn::Linear<T, B> proj, out;

 private:
  // Teacher-forced pass over the batch: fills every cache and rec_buf (B, 1).
  void run(Context<B>& ctx, const Batch& batch) {
    batch_ = &batch;
    const int nb = batch.size(), E = cfg_.embed, Hd = cfg_.dec_hidden();
    pk_ = batch.dec.drop_first_step();
    require(pk_.rows == batch.dec.rows - nb, "LanguageModel: the batch's decoder packing is inconsistent");
    const int n = pk_.rows;
    inputs_ = backend_ids(batch.dec_inputs, inputs_b_);
    const int32_t* inputs = inputs_ + nb;
    View<T> X = x_buf.shape(n, E);
    emb.forward(ctx, arena_, inputs, n, X.data, E);
    in_drop.forward(ctx, X, X, in_drop_cache);
    rnn.forward(ctx, arena_, X, pk_, rnn_cache);
    View<T> O = o_buf.shape(n, Hd);
    out_drop.forward(ctx, View<T>{rnn_cache.states.data(), n, Hd}, O, out_drop_cache);
    View<T> A = a_buf.shape(n, E);
    proj.forward(ctx, arena_, O, A);
    ops<B>::tanh_forward(A.size(), A.data, A.data);
    nn::VocabLoss<T, B>::forward(ctx, arena_, out, batch.outputs, A, rec_buf.shape(nb, 1), vocab_cache);
  }

  Config cfg_;
  Arena<T, B> arena_;
  const Batch* batch_ = nullptr;
  Packing pk_;
  // The batch's inputs, readable by B's kernels (backend_ids).
  Buffer<int32_t, B> inputs_b_;
  const int32_t* inputs_ = nullptr;
  Buffer<T, B> x_buf, o_buf, a_buf, rec_buf, drec_buf, da_buf, dp_buf, do_buf, dst_buf, dx_buf;
  typename nn::VocabLoss<T, B>::Cache vocab_cache;  // its logits hold the probabilities
  Buffer<double, B> parts_buf;  // the last forward's loss parts (model/losses.hpp)
  typename nn::GRU<T, B>::Cache rnn_cache;
  typename nn::Dropout<T, B>::Cache in_drop_cache, out_drop_cache;
};

}  // namespace couplevae
