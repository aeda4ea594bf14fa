// couplevae/model/model.hpp: Model<Posterior<F>, Regularizer<R>, Decoder<D>, Backend, Scalar>.
//
// The variational text model of the paper's lower path (Figure 3):
//   e    = BiGRU(dropout(emb(x)))                    (B, 2H)      reference.md §2
//   z    ~ q(z|x) = Posterior(e); kl[b]              (B, Z)       §3
//   h    = MLP(z)                                    (B, E)       §4
//   rec  = Decoder(h, x)                             (B)          §4-5
//   L    = mean_b rec[b] + L_reg(kl, z, step)                     §7
// forward_async(ctx, batch, step) runs the whole model, keeps what backward needs and leaves
// the loss parts on the backend (model/losses.hpp, no host wait); forward() is the same
// and reads them back. backward(ctx) accumulates dL/dtheta into arena().grads() (the
// caller zeroes). Noise comes from ctx.rng, so restoring ctx.rng.position replays a step
// exactly.
// importance_weights() gives the per-sample terms of the importance-sampled NLL (§13); it and
// reconstruct() draw each (sentence, sample) pair's noise by row (posterior/noise.hpp), so a
// sentence's terms do not depend on its batch.
// Coupled<Model> (model/coupled.hpp) derives from it and adds the deterministic path.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../backend/tags.hpp"
#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../nn/dropout.hpp"
#include "../nn/embedding.hpp"
#include "../nn/gru.hpp"
#include "../nn/mlp.hpp"
#include "../policies.hpp"
#include "../posterior/noise.hpp"
#include "losses.hpp"

namespace couplevae {

// Per-sentence squared gradient norms with respect to the encoded text e (reference.md §14,
// paper Table 4), in the batch's sorted order. Loss parts are sums over the batch, so each
// row is that sentence's own gradient; reg is the unweighted KL; h_ratio is
// ||dh/de||_F^2 / ||h||^2 for the stochastic signal h of the same sample.
struct GradNormTerms {
  std::vector<double> rec, rec_c, rec_sum, reg, h_ratio;  // rec_c, rec_sum: coupled models only
};

// Per-sentence importance-sampling terms, (B, N) row-major in the batch's sorted order.
struct ImportanceTerms {
  int batch = 0, samples = 0;
  std::vector<double> log_weight;  // log p(x|z) + log p(z) - log q(z|x)
  std::vector<double> log_ratio;   // log q(z|x) - log p(z)
  std::vector<double> rec;         // -log p(x|z)
};

template <class M>
class Coupled;

template <class P, class R, class D, class B = cpu, class T = float>
class Model {
  static_assert(is_backend_v<B>, "couplevae: Model's fourth argument is the backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(std::is_floating_point_v<T>, "couplevae: Model's scalar must be float or double");

 public:
  using scalar = T;
  using backend = B;
  using posterior_policy = P;
  using regularizer_policy = R;
  using decoder_policy = D;
  using posterior_module = typename P::template module<T, B>;
  using regularizer_module = typename R::template module<T, B>;
  using decoder_module = typename D::template module<T, B>;
  static constexpr bool has_latent = true;
  static constexpr bool is_coupled = false;

  Model(const Config& cfg, uint64_t seed) : Model(cfg, deferred{}) { finish(seed); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Config& config() const { return cfg_; }
  Arena<T, B>& arena() { return arena_; }
  const Arena<T, B>& arena() const { return arena_; }
  void zero_grad() { arena_.zero_grad(); }

  // "gaussian-kl-gru", the structure a checkpoint must match.
  static std::string structure() {
    return std::string(P::name) + "-" + R::name + "-" + D::name;
  }

  PendingLosses forward_async(Context<B>& ctx, const Batch& batch, long step) {
    return forward_stochastic(ctx, batch, step);
  }
  Losses forward(Context<B>& ctx, const Batch& batch, long step) {
    return read_losses(parts_buf, forward_async(ctx, batch, step));
  }
  void backward(Context<B>& ctx) { backward_stochastic(ctx, View<T>{}, View<T>{}); }

  // Evaluation mode is the caller's choice (ctx.training = false for the paper's numbers).
  // The text is encoded once; samples are drawn and decoded k at a time (k copies of each
  // sentence in one packed batch of about Config::eval_rows sentences), so the recurrences and the
  // vocabulary layer run on large matrices.
  // Noise: one key per call (take_noise_key: one block of ctx.rng); sample s of the caller's
  // sentence i draws from the stream sentence_noise_id(first + i, s). With `first` the index
  // of the batch's first sentence in its corpus and the same ctx position for every batch
  // (evaluate_nll), a sentence's terms do not depend on the batching nor on eval_rows (up
  // to float rounding in the matrix products).
  ImportanceTerms importance_weights(Context<B>& ctx, const Batch& batch, int samples, long first = 0) {
    ImportanceTerms it;
    const int nb = batch.size();
    it.batch = nb;
    it.samples = samples;
    it.log_weight.resize(size_t(nb) * samples);
    it.log_ratio.resize(it.log_weight.size());
    it.rec.resize(it.log_weight.size());
    batch_ = &batch;
    encode(ctx, batch);
    const uint64_t key = take_noise_key(ctx);
    const int k_max = std::max(1, std::min(samples, cfg_.eval_rows / nb));
    Batch rep;
    View<T> e_rep;
    int rep_k = 0;
    for (int s0 = 0; s0 < samples; s0 += k_max) {
      const int k = std::min(k_max, samples - s0);
      if (k != rep_k) {
        rep = replicate_batch(batch, k);
        rep_k = k;
        e_rep = replicated_codes(rep.order);
      }
      batch_ = &rep;
      post.sample(ctx, arena_, e_rep, post_cache, sentence_noise(key, batch, first, s0, k));
      mlp.forward(ctx, arena_, z(), h(), mlp_cache);
      if constexpr (requires { dec.loss(ctx, arena_, emb, rep, h(), rec_view(), dec_cache); })
        dec.loss(ctx, arena_, emb, rep, h(), rec_view(), dec_cache);
      else
        dec.forward(ctx, arena_, emb, rep, h(), rec_view(), dec_cache);
      const auto rec = rec_buf.to_host(), lq = post_cache.logq.to_host(), lp = post_cache.logp.to_host();
      for (int i = 0; i < nb * k; ++i) {
        const size_t idx = size_t(i / k) * samples + s0 + i % k;
        it.rec[idx] = double(rec[i]);
        it.log_ratio[idx] = double(lq[i]) - double(lp[i]);
        it.log_weight[idx] = -double(rec[i]) - it.log_ratio[idx];
      }
    }
    batch_ = &batch;
    return it;
  }

  // The gradient-norm analysis on one batch (training mode is the caller's choice; the
  // paper's numbers use it). Runs its own forward; leaves parameter gradients dirty
  // (zero them before training again).
  GradNormTerms gradient_norms(Context<B>& ctx, const Batch& batch) {
    forward_parts(ctx, batch);
    return gradient_norms_of_last(ctx);
  }

  // --- Generation (reference.md §5 greedy decoding, §13 BLEU / Dist / interpolation) ---
  // Decodes latent codes z (n, Z): h = MLP(z), then the decoder (greedy when temperature
  // <= 0; <unk> masked; cut at <eos>). Evaluation mode for the call.
  std::vector<std::vector<int32_t>> decode_codes(Context<B>& ctx, View<T> codes, int max_len, double temperature) {
    const bool was = ctx.training;
    ctx.training = false;
    View<T> hv = gen_h_buf.shape(codes.rows, cfg_.embed);
    mlp.forward(ctx, arena_, codes, hv, gen_mlp_cache);
    auto out = dec.decode(ctx, arena_, emb, hv, max_len, temperature);
    ctx.training = was;
    return out;
  }
  // n samples from the prior: z ~ N(0, I) (uniform on the sphere for vMF), decoded.
  std::vector<std::vector<int32_t>> sample_prior(Context<B>& ctx, int n, int max_len = 200, double temperature = 0) {
    require(n >= 1, "sample_prior: n must be >= 1");
    std::vector<T> zs(size_t(n) * cfg_.latent);
    ctx.rng.normal(zs.data(), zs.size());
    if constexpr (std::is_same_v<P, Posterior<VMF>>)
      for (int i = 0; i < n; ++i) {
        double s = 0;
        for (int k = 0; k < cfg_.latent; ++k) s += double(zs[size_t(i) * cfg_.latent + k]) * zs[size_t(i) * cfg_.latent + k];
        const double inv = 1.0 / std::sqrt(std::max(s, 1e-30));
        for (int k = 0; k < cfg_.latent; ++k) zs[size_t(i) * cfg_.latent + k] = T(zs[size_t(i) * cfg_.latent + k] * inv);
      }
    gen_z_buf.from_host(zs.data(), zs.size());
    return decode_codes(ctx, View<T>{gen_z_buf.data(), n, cfg_.latent}, max_len, temperature);
  }
  // The deterministic code of each sentence (the posterior mean; Appendix B), (B, Z) in the
  // caller's order of the sentences.
  std::vector<T> posterior_means(Context<B>& ctx, const Batch& batch) {
    const bool was = ctx.training;
    ctx.training = false;
    batch_ = &batch;
    encode(ctx, batch);
    typename posterior_module::Cache pc;
    post.mean(ctx, arena_, e(), pc);
    const auto z = pc.z.to_host();
    std::vector<T> out(z.size());
    for (int i = 0; i < batch.size(); ++i)
      std::copy_n(z.data() + size_t(i) * cfg_.latent, cfg_.latent, out.data() + size_t(batch.order[i]) * cfg_.latent);
    ctx.training = was;
    return out;
  }
  // `samples` posterior samples of every sentence, decoded greedily (reconstruction BLEU):
  // result[i * samples + s] is sample s of the caller's sentence i. Noise as in
  // importance_weights: sample s of sentence i from the stream sentence_noise_id(first + i, s)
  // under one key taken from ctx.rng.
  std::vector<std::vector<int32_t>> reconstruct(Context<B>& ctx, const Batch& batch, int samples, int max_len = 200,
                                                long first = 0) {
    const bool was = ctx.training;
    ctx.training = false;
    batch_ = &batch;
    encode(ctx, batch);
    const int nb = batch.size();
    typename posterior_module::Cache pc;
    const uint64_t key = take_noise_key(ctx);
    post.sample(ctx, arena_, replicated_codes(replica_rows(nb, samples)), pc,
                sentence_noise(key, batch, first, 0, samples));
    auto dec_out = decode_codes(ctx, View<T>{pc.z.data(), nb * samples, cfg_.latent}, max_len, 0);
    std::vector<std::vector<int32_t>> out(dec_out.size());
    for (int i = 0; i < nb * samples; ++i) out[size_t(batch.order[i / samples]) * samples + i % samples] = std::move(dec_out[i]);
    ctx.training = was;
    return out;
  }

  // What the last forward computed (batch's sorted order): e (B, 2H), z (B, Z), h (B, E).
  View<T> encoded() { return e(); }
  View<T> code() { return z(); }
  View<T> signal() { return h(); }

  // Runs the embedding and the encoder on `batch` (dropout only when ctx.training) and
  // returns e (B, 2H) in the batch's sorted order, valid until the next call on this model.
  // The analysis tools (eval/mi.hpp) then draw z ~ q(z|x) with their own posterior cache:
  // post.sample(ctx, arena(), e, cache). Coupled<Model> inherits it (its stochastic path).
  View<T> encode_batch(Context<B>& ctx, const Batch& batch) {
    batch_ = &batch;
    encode(ctx, batch);
    return e();
  }

  // Parts, public for users who assemble their own models and for the analysis tools.
  nn::Embedding<T, B> emb;
  nn::Dropout<T, B> emb_drop;
  nn::BiGRU<T, B> encoder;
  posterior_module post;
  regularizer_module reg;
  nn::MLP<T, B> mlp;
  decoder_module dec;

 protected:
  template <class M>
  friend class Coupled;
  struct deferred {};

  // Registers every parameter; the caller finishes with finish(seed).
  Model(const Config& cfg, deferred) : cfg_(cfg) {
    cfg_.validate();
    const Config& c = cfg_;
    emb = nn::Embedding<T, B>(arena_, "embedding", c.vocab_size, c.embed);
    emb_drop = nn::Dropout<T, B>(c.dropout);
    encoder = nn::BiGRU<T, B>(arena_, "encoder.rnn", c.embed, c.hidden);
    post = posterior_module(arena_, "posterior", 2 * c.hidden, c.latent);
    if constexpr (requires { post.svae_blend; }) post.svae_blend = c.vmf_blend;
    reg = regularizer_module(arena_, "regularizer", cfg_);
    mlp = nn::MLP<T, B>(arena_, "mlp", c.latent, c.mlp_size(), c.embed);
    dec = decoder_module(arena_, "decoder", c);
  }
  void finish(uint64_t seed) {
    arena_.finalize();
    arena_.initialise(seed);
  }

  // Views of the per-batch buffers (shape() sizes them without clearing).
  View<T> e() { return e_buf.shape(batch_->size(), 2 * cfg_.hidden); }
  // The encoded batch's codes e (nb, 2H) at `rows` (a replicated batch's order: row i holds
  // sentence rows[i]'s), gathered on the backend (no read-back).
  View<T> replicated_codes(const std::vector<int>& rows) {
    const int n = int(rows.size()), H2 = 2 * cfg_.hidden;
    View<T> out = e_rep_buf.shape(n, H2);
    ops<B>::gather_rows(e_buf.data(), H2, backend_ids(rows, rep_ids_buf), n, out.data, H2);
    return out;
  }
  // Noise by row under `key` for samples s0 .. s0 + k - 1 of every sentence of `batch` (the
  // corpus index of its first sentence: `first`), copies adjacent as replicate_batch lays
  // them out (sentence_noise_ids); the ids stay readable by B's kernels until the next call.
  RowNoise sentence_noise(uint64_t key, const Batch& batch, long first, long s0, int k) {
    noise_ids_host_ = sentence_noise_ids(batch.order, first, s0, k);
    return RowNoise{key, backend_ids(noise_ids_host_, noise_ids_buf)};
  }
  View<T> z() { return View<T>{post_cache.z.data(), batch_->size(), cfg_.latent}; }
  View<T> h() { return h_buf.shape(batch_->size(), cfg_.embed); }
  View<T> rec_view() { return rec_buf.shape(batch_->size(), 1); }

  void encode(Context<B>& ctx, const Batch& batch) {
    const int n = batch.enc.rows;
    View<T> x = x_buf.shape(n, cfg_.embed);
    enc_ids_ = backend_ids(batch.enc_tokens, enc_ids_buf);
    emb.forward(ctx, arena_, enc_ids_, n, x.data, cfg_.embed);
    emb_drop.forward(ctx, x, x, emb_drop_cache);
    encoder.forward(ctx, arena_, x, batch.enc, e(), enc_cache);
  }

  void forward_parts(Context<B>& ctx, const Batch& batch) { forward_stochastic(ctx, batch, 0); }

  // Squared row norms of a (B, C) host matrix.
  static std::vector<double> row_sq_norms(const std::vector<T>& m, int rows, int cols) {
    std::vector<double> out(rows, 0.0);
    for (int i = 0; i < rows; ++i)
      for (int k = 0; k < cols; ++k) out[i] += double(m[size_t(i) * cols + k]) * double(m[size_t(i) * cols + k]);
    return out;
  }

  // d(sum_b loss part)/de through the stochastic path, given dh (on h) and dkl (on kl).
  std::vector<T> de_from(Context<B>& ctx, View<T> dh, T dkl_value) {
    const int nb = batch_->size();
    View<T> dz = dz_buf.zeros(nb, cfg_.latent);
    if (dh) mlp.backward(ctx, arena_, z(), dh, dz, mlp_cache);
    View<T> dkl = dkl_buf.shape(nb, 1);
    ops<B>::fill(dkl.data, size_t(nb), dkl_value);
    View<T> de = de_buf.zeros(nb, 2 * cfg_.hidden);
    post.sample_backward(ctx, arena_, e(), dz, dkl, de, post_cache);
    return de_buf.to_host();
  }

  // Gradient norms of the stochastic path for the last forward (see GradNormTerms).
  GradNormTerms gradient_norms_of_last(Context<B>& ctx) {
    const Batch& batch = *batch_;
    const int nb = batch.size(), E = cfg_.embed, H2 = 2 * cfg_.hidden;
    GradNormTerms g;
    View<T> drec = drec_buf.shape(nb, 1);
    ops<B>::fill(drec.data, size_t(nb), T(1));
    View<T> dh = dh_buf.zeros(nb, E);
    dec.backward(ctx, arena_, emb, batch, h(), drec, dh, dec_cache);
    last_de_rec_ = de_from(ctx, dh, T(0));
    g.rec = row_sq_norms(last_de_rec_, nb, H2);
    g.reg = row_sq_norms(de_from(ctx, View<T>{}, T(1)), nb, H2);
    // ||dh/de||_F^2 one h-dimension at a time (E backward passes through MLP and posterior).
    std::vector<double> jac(nb, 0.0);
    std::vector<T> onehot(size_t(nb) * E, T(0));
    Buffer<T, B> dh_k;
    for (int k = 0; k < E; ++k) {
      for (int i = 0; i < nb; ++i) onehot[size_t(i) * E + k] = T(1);
      dh_k.from_host(onehot.data(), onehot.size());
      const auto n = row_sq_norms(de_from(ctx, View<T>{dh_k.data(), nb, E}, T(0)), nb, H2);
      for (int i = 0; i < nb; ++i) jac[i] += n[i], onehot[size_t(i) * E + k] = T(0);
    }
    const auto hn = row_sq_norms(h_buf.to_host(), nb, E);
    g.h_ratio.resize(nb);
    for (int i = 0; i < nb; ++i) g.h_ratio[i] = jac[i] / std::max(hn[i], 1e-30);
    return g;
  }
  std::vector<T> last_de_rec_;

  // The stochastic path; its parts (rec, kl, reg) go into parts_buf, the others are 0.
  PendingLosses forward_stochastic(Context<B>& ctx, const Batch& batch, long step) {
    PendingLosses l = forward_latent(ctx, batch, step);
    dec.forward(ctx, arena_, emb, batch, h(), rec_view(), dec_cache);
    sum_rec();
    return l;
  }
  // forward_stochastic in parts, so that Coupled runs its two decoders side by side: up to
  // h (kl and reg into parts_buf), then the decoder, then sum_rec (rec into parts_buf).
  PendingLosses forward_latent(Context<B>& ctx, const Batch& batch, long step) {
    batch_ = &batch;
    const int nb = batch.size();
    double* parts = parts_buf.zeros(1, loss_parts).data;
    encode(ctx, batch);
    post.sample(ctx, arena_, e(), post_cache);
    View<T> kl{post_cache.kl.data(), nb, 1};
    reg.forward(ctx, step, kl, z(), parts + part_reg, reg_cache);
    ops<B>::sum_into(kl.data, size_t(nb), 1.0 / nb, parts + part_kl);
    mlp.forward(ctx, arena_, z(), h(), mlp_cache);
    PendingLosses l;
    l.parts = parts;
    l.kl_weight = reg_cache.weight;
    l.sentences = nb;
    l.tokens = batch.target_tokens();
    return l;
  }

  void sum_rec() {
    const int nb = batch_->size();
    ops<B>::sum_into(rec_buf.data(), size_t(nb), 1.0 / nb, parts_buf.data() + part_rec);
  }

  // Accumulates the gradient of mean(rec) + L_reg, plus extra_dh on h and extra_de on e
  // (the coupled path's contributions) when given.
  void backward_stochastic(Context<B>& ctx, View<T> extra_dh, View<T> extra_de) {
    View<T> dh = backward_start(extra_dh);
    dec.backward(ctx, arena_, emb, *batch_, h(), drec_view(), dh, dec_cache);
    backward_latent(ctx, dh, extra_de);
  }
  // backward_stochastic in parts (Coupled): backward_start sets the decoder's drec = 1/B
  // (drec_view) and returns dh = extra_dh (or 0) for the decoder to add to; after the
  // decoder, backward_latent goes from dh (B, E) down to the embedding.
  View<T> backward_start(View<T> extra_dh) {
    const int nb = batch_->size();
    ops<B>::fill(drec_view().data, size_t(nb), T(1.0 / nb));
    View<T> dh = dh_buf.zeros(nb, cfg_.embed);
    if (extra_dh) ops<B>::axpy(dh.size(), T(1), extra_dh.data, dh.data);
    return dh;
  }
  View<T> drec_view() { return drec_buf.shape(batch_->size(), 1); }
  void backward_latent(Context<B>& ctx, View<T> dh, View<T> extra_de) {
    const Batch& batch = *batch_;
    const int nb = batch.size();
    View<T> dz = dz_buf.zeros(nb, cfg_.latent);
    mlp.backward(ctx, arena_, z(), dh, dz, mlp_cache);
    View<T> dkl = dkl_buf.zeros(nb, 1);
    reg.backward(ctx, View<T>{post_cache.kl.data(), nb, 1}, z(), dkl, dz, reg_cache);
    View<T> de = de_buf.zeros(nb, 2 * cfg_.hidden);
    if (extra_de) ops<B>::axpy(de.size(), T(1), extra_de.data, de.data);
    post.sample_backward(ctx, arena_, e(), dz, dkl, de, post_cache);
    View<T> dx = dx_buf.zeros(batch.enc.rows, cfg_.embed);
    View<T> x{x_buf.data(), batch.enc.rows, cfg_.embed};
    encoder.backward(ctx, arena_, x, batch.enc, de, dx, enc_cache);
    emb_drop.backward_inplace(dx, emb_drop_cache);
    emb.backward(ctx, arena_, enc_ids_, batch.enc.rows, dx.data, cfg_.embed);
  }

  Config cfg_;
  Arena<T, B> arena_;
  const Batch* batch_ = nullptr;
  Buffer<int32_t, B> enc_ids_buf, rep_ids_buf;
  std::vector<uint64_t> noise_ids_host_;  // on cpu, the rows' noise ids the kernels read
  Buffer<uint64_t, B> noise_ids_buf;
  const int32_t* enc_ids_ = nullptr;  // the last encoded batch's tokens, readable by B's kernels
  Buffer<T, B> gen_h_buf, gen_z_buf;
  typename nn::MLP<T, B>::Cache gen_mlp_cache;
  Buffer<double, B> parts_buf;  // the last forward's loss parts (model/losses.hpp)
  Buffer<T, B> x_buf, e_buf, e_rep_buf, h_buf, rec_buf, drec_buf, dh_buf, dz_buf, dkl_buf, de_buf, dx_buf;
  typename nn::Dropout<T, B>::Cache emb_drop_cache;
  typename nn::BiGRU<T, B>::Cache enc_cache;
  typename posterior_module::Cache post_cache;
  typename regularizer_module::Cache reg_cache;
  typename nn::MLP<T, B>::Cache mlp_cache;
  typename decoder_module::Cache dec_cache;
};

}  // namespace couplevae
