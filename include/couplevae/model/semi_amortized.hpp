// couplevae/model/semi_amortized.hpp: SemiAmortized<Model>, the SA-VAE of Kim et al. 2018
// (reference.md §11), for a Gaussian posterior with a KL-type regulariser and the GRU decoder.
//
// The encoder gives the initial variational parameters, in Kim's coordinates
//   lambda_0 = (mu_0, v_0),  mu_0 = W_mu e + b_mu,  v_0 = 2 (W_ls e + b_ls)   (log variance)
// then K = svi_steps steps of SVI with momentum on the batch objective
//   f(lambda) = mean_b [ rec_b(z_b) + w KL(N(mu_b, e^{v_b}) || N(0, I)) ],  z = mu + e^{v/2} eps_k
//   g_k = clip(df/dmu), clip(df/dv)        (each to the norm svi_clip over the batch)
//   p_k = m p_{k-1} - g_k (p_{-1} = 0),  lambda_{k+1} = lambda_k + lr p_k
// with fixed noise eps_k and decoder dropout replayed per k (noise is an argument), w the
// regulariser's weight at this step (1 in evaluation: Kim's test setting). The training loss
// is f(lambda_K) on fresh noise (rec, kl and reg reported at lambda_K).
// backward ("n2n"): the decoder, MLP and embedding get d f(lambda_K) / d theta and, through
// the unrolled SVI, the encoder gets d f(lambda_K) / d lambda_0; reverse mode with
// Hessian-vector products by finite differences (Kim's method):
//   a = df(lambda_K)/dlambda_K, q = 0
//   for k = K-1 .. 0:  q += lr a;  with r the step of the difference,
//     H_ll q ~ [grad_l f(lambda_k + r q) - grad_l f(lambda_k)] / r      (B, 2Z)
//     H_tl q ~ [grad_t f(lambda_k + r q) - grad_t f(lambda_k)] / r      (every theta)
//     theta's gradient -= clip(H_tl q);  a = clip(a - H_ll q);  q *= m
//   then a (on mu_0, v_0) goes through the heads, the encoder and the embedding.
// r: svi_fd > 0 is Kim's absolute step (1e-5); svi_fd = 0 (our default) scales the step so the
// largest entry of r q is sqrt(machine epsilon) x max(1, max |lambda_k|), which keeps the
// difference above float rounding (Kim's fixed 1e-5 moves entries of lambda by less than
// one float ulp when q is small). The clipping in the forward is not differentiated (Kim
// neither); in the backward we difference unclipped gradients (Kim clips the perturbed ones,
// but not the stored ones, which makes the difference meaningless whenever clipping acts).
// grad f(lambda_k) (theta's and lambda's parts) is the SVI step's own gradient: with
// cfg.svi_keep (the default, as Kim's code) the forward keeps it for the backward, otherwise
// the backward computes it again (the same pass on the same noise and dropout masks, so the
// result is the same bit for bit).
// Cost: one encoder pass and 2K + 1 decoder passes (forward and backward) per training step,
// 3K + 1 without svi_keep; memory: K + 1 copies of lambda and of the noise, four
// arena-sized gradient buffers, and with svi_keep K more (about 20 MB each at PTB sizes).
// The step reads norms on the host, so it is never captured in a CUDA Graph.
// Evaluation (importance_weights): the same K SVI steps (w = 1, no dropout), then the
// importance-sampled NLL with q(z | lambda_K) as the proposal; KL is its Monte Carlo estimate.
// Its noise is drawn by row as Model's (posterior/noise.hpp): importance sample s of sentence i
// from stream sentence_noise_id(first + i, s), SVI step k's from sentence_noise_id(first + i,
// svi_noise_slot + k). The SVI's gradient clipping acts on the whole batch, so unlike the
// amortized models a sentence's terms still depend on its batch.
// The paper does not couple SA-VAE (not amortized inference): Coupled<SemiAmortized<M>>
// does not compile. MI, BLEU, the gradient-norm analysis and interpolation read the amortized
// encoder and are left out for it by the tool.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../decoder/gru.hpp"
#include "../posterior/gaussian.hpp"
#include "../regularizer/kl.hpp"
#include "model.hpp"

namespace couplevae {

template <class M>
class SemiAmortized;

namespace detail {
template <class M>
struct is_semi_amortized : std::false_type {};
template <class M>
struct is_semi_amortized<SemiAmortized<M>> : std::true_type {};
}  // namespace detail

template <class M>
class SemiAmortized : public M {
  static_assert(!detail::is_semi_amortized<M>::value,
                "couplevae: SemiAmortized<SemiAmortized<M>> is not a model; wrap the base model once");
  static_assert(std::is_same_v<typename M::posterior_policy, Posterior<Gaussian>>,
                "couplevae: SemiAmortized<M> refines a diagonal Gaussian posterior: use Posterior<Gaussian>");
  static_assert(std::is_same_v<typename M::regularizer_policy, Regularizer<KL>> ||
                    std::is_same_v<typename M::regularizer_policy, Regularizer<Beta>>,
                "couplevae: SemiAmortized<M> optimises the ELBO per sentence: use Regularizer<KL> or Regularizer<Beta>");
  static_assert(std::is_same_v<typename M::decoder_policy, Decoder<GRU>>,
                "couplevae: SemiAmortized<M> uses Decoder<GRU> (a BatchNorm decoder would update its statistics "
                "at every SVI step)");

 public:
  using T = typename M::scalar;
  using B = typename M::backend;
  using base_model = M;
  static constexpr bool is_semi_amortized = true;
  static constexpr bool graph_capturable = false;

  SemiAmortized(const Config& cfg, uint64_t seed) : M(cfg, seed) {}

  static std::string structure() { return "semi-amortized-" + M::structure(); }

  PendingLosses forward_async(Context<B>& ctx, const Batch& batch, long step) {
    const double w = M::regularizer_policy::weight(this->cfg_, step);
    refine(ctx, batch, w, cfg().svi_keep, [](int) { return RowNoise{}; });
    // The loss at lambda_K on fresh noise.
    const int nb = batch.size(), Z = this->cfg_.latent;
    View<T> eps = final_eps_.shape(nb, Z);
    ops<B>::normal(ctx.rng, eps.data, eps.size());
    pass(ctx, batch, lam_mu(steps()), lam_v(steps()), eps.data, w, false);
    double* parts = this->parts_buf.zeros(1, loss_parts).data;
    ops<B>::sum_into(rec_.data(), size_t(nb), 1.0 / nb, parts + part_rec);
    ops<B>::sum_into(kl_.data(), size_t(nb), 1.0 / nb, parts + part_kl);
    ops<B>::sum_into(kl_.data(), size_t(nb), w / nb, parts + part_reg);
    end_position_ = ctx.rng.position;
    PendingLosses l;
    l.parts = parts;
    l.kl_weight = w;
    l.sentences = nb;
    l.tokens = batch.target_tokens();
    return l;
  }
  Losses forward(Context<B>& ctx, const Batch& batch, long step) {
    return read_losses(this->parts_buf, forward_async(ctx, batch, step));
  }

  void backward(Context<B>& ctx) {
    const Batch& batch = *this->batch_;
    const int nb = batch.size(), Z = this->cfg_.latent, K = steps();
    const size_t n = this->arena_.total(), nl = size_t(nb) * Z;
    auto& grads = this->arena_.grads();
    // The caller's gradients are kept aside and added back at the end (accumulate rule).
    saved_.resize(n);
    ops<B>::copy(grads.data(), n, saved_.data());
    grads.fill_zero();
    // d f(lambda_K) from the forward's last pass: theta's part into acc_, lambda's into a = (a_mu, a_v).
    pass_backward(ctx, batch, lam_mu(K), final_eps_.data(), w_);
    acc_.resize(n);
    ops<B>::copy(grads.data(), n, acc_.data());
    T* a_mu = a_.zeros(2 * nb, Z).data;
    T* a_v = a_mu + nl;
    ops<B>::copy(dmu_.data(), nl, a_mu);
    ops<B>::copy(dv_.data(), nl, a_v);
    T* q = q_.zeros(2 * nb, Z).data;  // (q_mu; q_v)
    T* probe = probe_.shape(2 * nb, Z).data;
    plus_.resize(n);
    for (int k = K - 1; k >= 0; --k) {
      ops<B>::axpy(2 * nl, T(cfg().svi_lr), a_mu, q);
      const double r = difference_step(q, lam_mu(k), 2 * nl);
      // Gradients at lambda_k + r q ...
      ops<B>::copy(lam_mu(k), 2 * nl, probe);
      ops<B>::axpy(2 * nl, T(r), q, probe);
      grads.fill_zero();
      ctx.rng.position = positions_[size_t(k)];
      pass(ctx, batch, probe, probe + nl, eps_k(k), w_, true);
      ops<B>::copy(grads.data(), n, plus_.data());
      T* g_plus = g_plus_.shape(2 * nb, Z).data;
      ops<B>::copy(dmu_.data(), nl, g_plus);
      ops<B>::copy(dv_.data(), nl, g_plus + nl);
      // ... and at lambda_k: kept by the forward, or computed again.
      const T *g_theta = grads.data(), *g_mu = dmu_.data(), *g_v = dv_.data();
      if (kept_) {
        g_theta = kept_theta(k), g_mu = kept_lambda(k), g_v = g_mu + nl;
      } else {
        grads.fill_zero();
        ctx.rng.position = positions_[size_t(k)];
        pass(ctx, batch, lam_mu(k), lam_v(k), eps_k(k), w_, true);
      }
      // H_tl q = (plus - g_theta) / r, clipped; acc -= it.
      ops<B>::axpy(n, T(-1), g_theta, plus_.data());
      ops<B>::scale(plus_.data(), n, T(1.0 / r));
      clip(plus_.data(), n);
      ops<B>::axpy(n, T(-1), plus_.data(), acc_.data());
      // H_ll q = (g_plus - g) / r; a -= it, clipped.
      ops<B>::axpy(nl, T(-1), g_mu, g_plus);
      ops<B>::axpy(nl, T(-1), g_v, g_plus + nl);
      ops<B>::axpy(2 * nl, T(-1.0 / r), g_plus, a_mu);
      clip(a_mu, 2 * nl);
      ops<B>::scale(q, 2 * nl, T(cfg().svi_momentum));
    }
    // a reaches the encoder: d/d ls_0 = 2 d/d v_0.
    ops<B>::copy(acc_.data(), n, grads.data());
    ops<B>::scale(a_v, nl, T(2));
    View<T> de = this->de_buf.zeros(nb, 2 * this->cfg_.hidden);
    this->post.mu.backward(ctx, this->arena_, this->e(), View<T>{a_mu, nb, Z}, de);
    this->post.ls.backward(ctx, this->arena_, this->e(), View<T>{a_v, nb, Z}, de);
    View<T> dx = this->dx_buf.zeros(batch.enc.rows, this->cfg_.embed);
    View<T> x{this->x_buf.data(), batch.enc.rows, this->cfg_.embed};
    this->encoder.backward(ctx, this->arena_, x, batch.enc, de, dx, this->enc_cache);
    this->emb_drop.backward_inplace(dx, this->emb_drop_cache);
    this->emb.backward(ctx, this->arena_, this->enc_ids_, batch.enc.rows, dx.data, this->cfg_.embed);
    ops<B>::axpy(n, T(1), saved_.data(), grads.data());
    ctx.rng.position = end_position_;
  }

  // The importance-sampled NLL's terms (model.hpp) with the refined proposal q(z | lambda_K);
  // the SVI runs with w = 1 in the caller's mode (evaluation for the paper's numbers).
  // Parameter gradients are left as they were.
  ImportanceTerms importance_weights(Context<B>& ctx, const Batch& batch, int samples, long first = 0) {
    const size_t n = this->arena_.total();
    saved_.resize(n);
    ops<B>::copy(this->arena_.grads().data(), n, saved_.data());
    const uint64_t key = take_noise_key(ctx);
    refine(ctx, batch, 1.0, false,
           [&](int k) { return this->sentence_noise(key, batch, first, svi_noise_slot + k, 1); });
    ImportanceTerms it;
    const int nb = batch.size(), Z = this->cfg_.latent;
    it.batch = nb;
    it.samples = samples;
    it.log_weight.resize(size_t(nb) * samples);
    it.log_ratio.resize(it.log_weight.size());
    it.rec.resize(it.log_weight.size());
    View<T> eps = final_eps_.shape(nb, Z);
    for (int s = 0; s < samples; ++s) {
      draw_normal(ctx, this->sentence_noise(key, batch, first, s, 1), eps);
      pass(ctx, batch, lam_mu(steps()), lam_v(steps()), eps.data, 1.0, false);
      const auto rec = rec_.to_host(), lq = logq_.to_host(), lp = logp_.to_host();
      for (int i = 0; i < nb; ++i) {
        const size_t idx = size_t(i) * samples + s;
        it.rec[idx] = double(rec[i]);
        it.log_ratio[idx] = double(lq[i]) - double(lp[i]);
        it.log_weight[idx] = -double(rec[i]) - it.log_ratio[idx];
      }
    }
    ops<B>::copy(saved_.data(), n, this->arena_.grads().data());
    return it;
  }

  // The refined parameters of the last forward (batch's sorted order): mu_K and log variance v_K (B, Z).
  View<T> refined_mean() { return View<T>{lam_mu(steps()), this->batch_->size(), this->cfg_.latent}; }
  View<T> refined_log_variance() { return View<T>{lam_v(steps()), this->batch_->size(), this->cfg_.latent}; }
  // The amortized ones (the encoder's, lambda_0).
  View<T> initial_mean() { return View<T>{lam_mu(0), this->batch_->size(), this->cfg_.latent}; }
  // The batch objective f(lambda_k) at each SVI step of the last forward, read on the host
  // (k = 0 .. K-1; the loss of the forward is f(lambda_K) on its own noise).
  const std::vector<double>& svi_objectives() const { return objectives_; }

 private:
  // Evaluation's SVI noise: slots far above any importance sample's.
  static constexpr long svi_noise_slot = 1L << 31;
  const Config& cfg() const { return this->cfg_; }
  int steps() const { return cfg().svi_steps; }
  size_t lam_size() const { return size_t(this->batch_->size()) * this->cfg_.latent; }
  // lambda_k = (mu_k; v_k) in lams_: (K + 1) blocks of 2 (B, Z).
  T* lam_mu(int k) { return lams_.data() + size_t(k) * 2 * lam_size(); }
  T* lam_v(int k) { return lam_mu(k) + lam_size(); }
  T* eps_k(int k) { return epss_.data() + size_t(k) * lam_size(); }
  // With svi_keep: grad_theta f(lambda_k) (arena layout) and grad_lambda f(lambda_k) (2 (B, Z), unclipped).
  T* kept_theta(int k) { return kept_thetas_.data() + size_t(k) * this->arena_.total(); }
  T* kept_lambda(int k) { return kept_lambdas_.data() + size_t(k) * 2 * lam_size(); }

  // Encoder, heads and the K SVI steps (lambda_0 .. lambda_K, their noise and generator
  // positions); objectives_ gets f(lambda_k); with `keep`, the steps' gradients are kept.
  // Step k's noise is draw_normal(ctx, noise(k)): ctx.rng's next draws for an empty RowNoise
  // (training), by row for evaluation.
  template <class NoiseOf>
  void refine(Context<B>& ctx, const Batch& batch, double w, bool keep, NoiseOf noise) {
    this->batch_ = &batch;
    w_ = w;
    kept_ = keep;
    const int nb = batch.size(), Z = this->cfg_.latent, K = steps();
    const size_t nl = size_t(nb) * Z;
    this->encode(ctx, batch);
    lams_.resize(size_t(K + 1) * 2 * nl);
    epss_.resize(std::max<size_t>(1, size_t(K) * nl));
    this->post.mu.forward(ctx, this->arena_, this->e(), View<T>{lam_mu(0), nb, Z});
    this->post.ls.forward(ctx, this->arena_, this->e(), View<T>{lam_v(0), nb, Z});
    ops<B>::scale(lam_v(0), nl, T(2));
    T* p = mom_.zeros(2 * nb, Z).data;
    positions_.assign(size_t(K), 0);
    objectives_.assign(size_t(K), 0.0);
    auto& grads = this->arena_.grads();
    const size_t n = this->arena_.total();
    // The SVI passes add parameter gradients the caller must not see.
    scratch_.resize(n);
    ops<B>::copy(grads.data(), n, scratch_.data());
    if (keep) {
      kept_thetas_.resize(std::max<size_t>(1, size_t(K) * n));
      kept_lambdas_.resize(std::max<size_t>(1, size_t(K) * 2 * nl));
    }
    for (int k = 0; k < K; ++k) {
      draw_normal(ctx, noise(k), View<T>{eps_k(k), nb, Z});
      positions_[size_t(k)] = ctx.rng.position;
      if (keep) grads.fill_zero();
      pass(ctx, batch, lam_mu(k), lam_v(k), eps_k(k), w, true);
      objectives_[size_t(k)] = objective();
      if (keep) {
        ops<B>::copy(grads.data(), n, kept_theta(k));
        ops<B>::copy(dmu_.data(), nl, kept_lambda(k));
        ops<B>::copy(dv_.data(), nl, kept_lambda(k) + nl);
      }
      clip(dmu_.data(), nl);
      clip(dv_.data(), nl);
      // p = m p - g;  lambda_{k+1} = lambda_k + lr p
      ops<B>::scale(p, 2 * nl, T(cfg().svi_momentum));
      ops<B>::axpy(nl, T(-1), dmu_.data(), p);
      ops<B>::axpy(nl, T(-1), dv_.data(), p + nl);
      ops<B>::copy(lam_mu(k), 2 * nl, lam_mu(k + 1));
      ops<B>::axpy(2 * nl, T(cfg().svi_lr), p, lam_mu(k + 1));
    }
    ops<B>::copy(scratch_.data(), n, grads.data());
  }

  // One pass of the objective at (mu, v) with noise eps: z, kl, logq, logp, h, rec; with
  // `grad`, also the backward: dmu_, dv_ (B, Z) and theta's gradient added to the arena.
  void pass(Context<B>& ctx, const Batch& batch, const T* mu, const T* v, const T* eps, double w, bool grad) {
    const int nb = batch.size(), Z = this->cfg_.latent, E = this->cfg_.embed;
    const size_t nl = size_t(nb) * Z;
    T* ls = ls_.shape(nb, Z).data;
    ops<B>::copy(v, nl, ls);
    ops<B>::scale(ls, nl, T(0.5));
    View<T> z = z_.shape(nb, Z), h = h_.shape(nb, E), rec = rec_.shape(nb, 1);
    ops<B>::gaussian_sample(nb, Z, mu, ls, eps, z.data, kl_.shape(nb, 1).data, logq_.shape(nb, 1).data,
                            logp_.shape(nb, 1).data);
    this->mlp.forward(ctx, this->arena_, z, h, mlp_cache_);
    if (!grad && !ctx.training)
      this->dec.loss(ctx, this->arena_, this->emb, batch, h, rec, dec_cache_);
    else
      this->dec.forward(ctx, this->arena_, this->emb, batch, h, rec, dec_cache_);
    if (grad) pass_backward(ctx, batch, mu, eps, w);
  }

  // The backward of the last pass (its caches, z, h and log sigma) at (mu, .) with noise eps:
  // dmu_, dv_ and theta's gradient added to the arena.
  void pass_backward(Context<B>& ctx, const Batch& batch, const T* mu, const T* eps, double w) {
    const int nb = batch.size(), Z = this->cfg_.latent, E = this->cfg_.embed;
    const size_t nl = size_t(nb) * Z;
    const T* ls = ls_.data();
    View<T> z{z_.data(), nb, Z}, h{h_.data(), nb, E};
    View<T> drec = drec_.shape(nb, 1);
    ops<B>::fill(drec.data, size_t(nb), T(1.0 / nb));
    View<T> dh = dh_.zeros(nb, E);
    this->dec.backward(ctx, this->arena_, this->emb, batch, h, drec, dh, dec_cache_);
    View<T> dz = dz_.zeros(nb, Z);
    this->mlp.backward(ctx, this->arena_, z, dh, dz, mlp_cache_);
    View<T> dkl = dkl_.shape(nb, 1);
    ops<B>::fill(dkl.data, size_t(nb), T(w / nb));
    T* dmu = dmu_.zeros(nb, Z).data;
    T* dls = dls_.zeros(nb, Z).data;
    ops<B>::gaussian_sample_backward(nb, Z, mu, ls, eps, dz.data, dkl.data, dmu, dls);
    T* dv = dv_.shape(nb, Z).data;
    ops<B>::copy(dls, nl, dv);
    ops<B>::scale(dv, nl, T(0.5));
  }

  // f of the last pass, on the host.
  double objective() const {
    const int nb = this->batch_->size();
    return (ops<B>::sum(rec_.data(), size_t(nb)) + w_ * ops<B>::sum(kl_.data(), size_t(nb))) / nb;
  }

  // x *= min(1, svi_clip / (||x|| + 1e-6)).
  void clip(T* x, size_t n) {
    const double norm = std::sqrt(ops<B>::sum_squares(x, n));
    const double c = kernels::clip_factor(norm, cfg().svi_clip);
    if (c < 1) ops<B>::scale(x, n, T(c));
  }

  // r of the finite difference along q at lambda (see the header).
  double difference_step(const T* q, const T* lambda, size_t n) const {
    if (cfg().svi_fd > 0) return cfg().svi_fd;
    const auto qh = to_host(q, n), lh = to_host(lambda, n);
    double qmax = 0, lmax = 1;
    for (size_t i = 0; i < n; ++i) qmax = std::max(qmax, std::abs(double(qh[i]))), lmax = std::max(lmax, std::abs(double(lh[i])));
    if (qmax == 0) return 1;  // q = 0: both gradients are taken at lambda_k, any r gives 0
    return std::sqrt(double(std::numeric_limits<T>::epsilon())) * lmax / qmax;
  }
  static std::vector<T> to_host(const T* p, size_t n) {
    Buffer<T, B> tmp;
    tmp.resize(n);
    ops<B>::copy(p, n, tmp.data());
    return tmp.to_host();
  }

  double w_ = 1;
  bool kept_ = false;
  uint64_t end_position_ = 0;
  std::vector<uint64_t> positions_;
  std::vector<double> objectives_;
  Buffer<T, B> lams_, epss_, final_eps_, mom_, a_, q_, probe_, g_plus_;
  Buffer<T, B> ls_, z_, h_, rec_, kl_, logq_, logp_, drec_, dh_, dz_, dkl_, dmu_, dls_, dv_;
  Buffer<T, B> saved_, scratch_, acc_, plus_, kept_thetas_, kept_lambdas_;
  typename nn::MLP<T, B>::Cache mlp_cache_;
  typename M::decoder_module::Cache dec_cache_;
};

}  // namespace couplevae
