// couplevae/model/coupled.hpp: Coupled<Model>, the paper's Couple-VAE wrapper (Eq. 4-5).
//
// The coupled deterministic network (paper Figure 3, upper path) shares the embedding and
// the encoder with the wrapped model and owns a posterior head of the same family used in
// its deterministic mode (z^c = the family's deterministic code: the mean for Gaussian,
// Appendix B), an MLP^c and a Decoder^c of the same structure (reference.md §8):
//   z^c = Posterior^c.mean(e),  h^c = MLP^c(z^c),  rec_c = Decoder^c(h^c, x)
//   d_b = ||h_b - stopgrad(h^c_b)||^2
//   L_couple = mean_b -sum_s C_s / (C_s + d_b),  C_s = s * C,  s in {0.1,0.2,0.5,1,2,5,10}
//              (or mean_b d_b with config.coupling = "euclidean")
//   L = L_rec + L_reg + L_rec^c + lambda_c * L_couple
// Because h^c is detached, L_couple moves only the stochastic path; L_rec^c reaches the
// shared encoder and embedding. Coupled<M> is itself a model with M's contract.
// A training step runs both latent paths, then both decoders side by side
// (decoder/side_by_side.hpp: with Decoder<GRU> their recurrences step together, one launch
// a step on cuda), forward and backward; the numbers and the dropout masks are those of one
// decoder after the other.
#pragma once
#include <string>

#include "../decoder/side_by_side.hpp"
#include "model.hpp"

namespace couplevae {

template <class M>
class Coupled;

namespace detail {
template <class M>
struct is_coupled : std::false_type {};
template <class M>
struct is_coupled<Coupled<M>> : std::true_type {};

// A posterior family is stochastic unless it says `static constexpr bool stochastic = false`.
template <class P>
constexpr bool posterior_is_stochastic() {
  if constexpr (requires { P::stochastic; })
    return P::stochastic;
  else
    return true;
}
template <class M>
constexpr bool has_stochastic_latent() {
  if constexpr (!M::has_latent)
    return false;
  else
    return posterior_is_stochastic<typename M::posterior_policy>();
}
}  // namespace detail

template <class M>
class Coupled : public M {
  static_assert(!detail::is_coupled<M>::value,
                "couplevae: Coupled<Coupled<M>> is not a model; couple the base model once: Coupled<M>");
  static_assert(!requires { M::is_semi_amortized; },
                "couplevae: Coupled<SemiAmortized<M>> is not a model: SA-VAE refines each posterior by SVI instead "
                "of amortized inference, and the paper does not couple it; couple the amortized model: Coupled<M>");
  static_assert(M::has_latent,
                "couplevae: Coupled<M> needs a model with a latent path (a Model<Posterior<...>, ...>); "
                "the GRU-LM has none to couple");
  static_assert(!M::has_latent || detail::has_stochastic_latent<M>(),
                "couplevae: Coupled<M> needs a stochastic posterior (Gaussian, Flow<K> or VMF); the DAE "
                "(Posterior<Deterministic>) is already deterministic: use it as it is");

 public:
  using T = typename M::scalar;
  using B = typename M::backend;
  using base_model = M;
  using decoder_module = typename M::decoder_module;
  static constexpr bool is_coupled = true;
  static constexpr double scales[7] = {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};

  Coupled(const Config& cfg, uint64_t seed) : M(cfg, typename M::deferred{}) {
    const Config& c = this->cfg_;
    auto& ar = this->arena_;
    post_c = typename M::posterior_module(ar, "couple.posterior", 2 * c.hidden, c.latent, /*deterministic=*/true);
    mlp_c = nn::MLP<T, B>(ar, "couple.mlp", c.latent, c.mlp_size(), c.embed);
    dec_c = typename M::decoder_module(ar, "couple.decoder", c);
    this->finish(seed);
  }

  static std::string structure() { return "coupled-" + M::structure(); }

  // The two decoders run side by side (decoder/side_by_side.hpp), after both latent paths.
  PendingLosses forward_async(Context<B>& ctx, const Batch& batch, long step) {
    PendingLosses l = this->forward_latent(ctx, batch, step);
    deterministic_latent(ctx);
    const int nb = batch.size();
    const Run runs[] = {{this->dec, this->h(), this->rec_view(), View<T>{}, this->dec_cache},
                        {dec_c, hc(), rec_c_buf.shape(nb, 1), View<T>{}, dec_c_cache}};
    forward_decoders(ctx, this->arena_, this->emb, batch, runs);
    this->sum_rec();
    double* parts = this->parts_buf.data();
    ops<B>::sum_into(rec_c_buf.data(), size_t(nb), 1.0 / nb, parts + part_rec_c);
    View<T> cl = couple_buf.shape(nb, 1);
    for (int i = 0; i < 7; ++i) C_[i] = scales[i] * this->cfg_.coupling_c();
    ops<B>::coupling_forward(nb, this->cfg_.embed, this->h_buf.data(), target(), C_, 7, rq(), cl.data);
    ops<B>::sum_into(cl.data, size_t(nb), 1.0 / nb, parts + part_couple);
    l.lambda_c = this->cfg_.lambda_c;
    return l;
  }
  Losses forward(Context<B>& ctx, const Batch& batch, long step) {
    return read_losses(this->parts_buf, forward_async(ctx, batch, step));
  }

  // Both decoders side by side (the deterministic one's first: the embedding's gradient
  // sums in the order it always did), then each latent path down to e.
  void backward(Context<B>& ctx) {
    const Batch& batch = *this->batch_;
    const int nb = batch.size(), E = this->cfg_.embed;
    // Coupling loss: gradient on h only (h^c detached).
    View<T> dcl = dcouple_buf.shape(nb, 1);
    ops<B>::fill(dcl.data, size_t(nb), T(this->cfg_.lambda_c / nb));
    View<T> dh_couple = dh_couple_buf.zeros(nb, E);
    ops<B>::coupling_backward(nb, E, this->h_buf.data(), target(), C_, 7, rq(), dcl.data, dh_couple.data);
    View<T> dh = this->backward_start(dh_couple);
    View<T> drec = drec_c_buf.shape(nb, 1);
    ops<B>::fill(drec.data, size_t(nb), T(1.0 / nb));
    View<T> dhc = dhc_buf.zeros(nb, E);
    const Run runs[] = {{dec_c, hc(), drec, dhc, dec_c_cache},
                        {this->dec, this->h(), this->drec_view(), dh, this->dec_cache}};
    backward_decoders(ctx, this->arena_, this->emb, batch, runs);
    // Deterministic path: h^c -> z^c -> e.
    View<T> de = deterministic_backward(ctx, dhc);
    this->backward_latent(ctx, dh, de);
  }

  // The gradient-norm analysis (reference.md §14) with the coupled terms: rec_c is the
  // deterministic path's reconstruction, rec_sum that of rec + rec_c.
  GradNormTerms gradient_norms(Context<B>& ctx, const Batch& batch) {
    this->forward_parts(ctx, batch);
    deterministic_forward(ctx, batch);
    GradNormTerms g = this->gradient_norms_of_last(ctx);
    const int nb = batch.size(), H2 = 2 * this->cfg_.hidden;
    View<T> drec = drec_c_buf.shape(nb, 1);
    ops<B>::fill(drec.data, size_t(nb), T(1));
    View<T> dhc = dhc_buf.zeros(nb, this->cfg_.embed);
    dec_c.backward(ctx, this->arena_, this->emb, batch, hc(), drec, dhc, dec_c_cache);
    deterministic_backward(ctx, dhc);
    const auto dec_c_host = de_c_buf.to_host();
    g.rec_c = this->row_sq_norms(dec_c_host, nb, H2);
    std::vector<T> sum(dec_c_host.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = dec_c_host[i] + this->last_de_rec_[i];
    g.rec_sum = this->row_sq_norms(sum, nb, H2);
    return g;
  }

  // Per-sentence reconstruction loss of the deterministic path, -log p(x | z^c), in the
  // batch's sorted order (evaluation reports its mean as rec_c).
  std::vector<double> deterministic_rec(Context<B>& ctx, const Batch& batch) {
    this->batch_ = &batch;
    this->encode(ctx, batch);
    deterministic_forward(ctx, batch);
    const auto r = rec_c_buf.to_host();
    return std::vector<double>(r.begin(), r.begin() + batch.size());
  }

  // The deterministic path's z^c (B, Z) and h^c (B, E) from the last forward.
  View<T> coupled_code() { return zc(); }
  View<T> coupled_signal() { return hc(); }

  // Stop-gradient made explicit for finite-difference checks: while frozen, the coupling
  // loss measures h against the h^c of the last forward before freezing, as a constant.
  void freeze_coupling_target(bool on) {
    frozen_ = on;
    if (on) {
      const size_t n = size_t(this->batch_->size()) * this->cfg_.embed;
      frozen_hc_.resize(n);
      ops<B>::copy(hc_buf.data(), n, frozen_hc_.data());
    }
  }

  typename M::posterior_module post_c;
  nn::MLP<T, B> mlp_c;
  typename M::decoder_module dec_c;

 private:
  bool rq() const { return this->cfg_.coupling == "rq"; }
  const T* target() const { return frozen_ ? frozen_hc_.data() : hc_buf.data(); }
  View<T> zc() { return View<T>{post_c_cache.z.data(), this->batch_->size(), this->cfg_.latent}; }
  View<T> hc() { return hc_buf.shape(this->batch_->size(), this->cfg_.embed); }

  using Run = DecoderRun<decoder_module, T>;

  void deterministic_forward(Context<B>& ctx, const Batch& batch) {
    deterministic_latent(ctx);
    dec_c.forward(ctx, this->arena_, this->emb, batch, hc(), rec_c_buf.shape(batch.size(), 1), dec_c_cache);
  }
  // z^c and h^c from e.
  void deterministic_latent(Context<B>& ctx) {
    post_c.mean(ctx, this->arena_, this->e(), post_c_cache);
    mlp_c.forward(ctx, this->arena_, zc(), hc(), mlp_c_cache);
  }
  // From dhc (B, E) on h^c down to de_c_buf (B, 2H), returned.
  View<T> deterministic_backward(Context<B>& ctx, View<T> dhc) {
    const int nb = this->batch_->size();
    View<T> dzc = dzc_buf.zeros(nb, this->cfg_.latent);
    mlp_c.backward(ctx, this->arena_, zc(), dhc, dzc, mlp_c_cache);
    View<T> de = de_c_buf.zeros(nb, 2 * this->cfg_.hidden);
    post_c.mean_backward(ctx, this->arena_, this->e(), dzc, de, post_c_cache);
    return de;
  }

  double C_[7] = {};
  bool frozen_ = false;
  Buffer<T, B> frozen_hc_;
  Buffer<T, B> hc_buf, rec_c_buf, couple_buf, drec_c_buf, dhc_buf, dzc_buf, de_c_buf, dcouple_buf, dh_couple_buf;
  typename M::posterior_module::Cache post_c_cache;
  typename nn::MLP<T, B>::Cache mlp_c_cache;
  typename M::decoder_module::Cache dec_c_cache;
};

}  // namespace couplevae
