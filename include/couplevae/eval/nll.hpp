// couplevae/eval/nll.hpp: importance-sampled NLL, KL, reconstruction and PPL (reference.md §13).
//
// For each sentence x, with N samples z_i ~ q(z|x) in evaluation mode:
//   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)
//   NLL_x   = -(logsumexp_i log w_i - log N)
//   KL_x    = mean_i [log q(z_i|x) - log p(z_i)]        (Monte Carlo, same samples)
//   rec_x   = mean_i [-log p(x|z_i)]
//   PPL     = exp(sum_x NLL_x / sum_x (L_x + 1))          (corpus-level)
// Reported nll, kl, rec are means over sentences; a Coupled model also reports rec_c, the
// deterministic path's -log p(x|z^c). Sentences are taken in corpus order.
// The GRU-LM's likelihood is exact (one pass, no sampling); the DAE has no likelihood, so
// only rec (its cross-entropy) is reported and has_nll is false.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../data/batcher.hpp"

namespace couplevae {

struct NllReport {
  double nll = 0, kl = 0, rec = 0, ppl = 0, rec_c = 0;
  bool has_nll = true;    // false for the DAE: nll, kl, ppl do not apply
  bool has_rec_c = false;
  long sentences = 0, tokens = 0;
  int samples = 0;
};

// progress(done, total) is called after every batch when given.
namespace detail {
template <class M>
constexpr bool exact_likelihood() {
  if constexpr (requires { M::exact_likelihood; })
    return M::exact_likelihood;
  else
    return false;
}
template <class M>
constexpr bool has_likelihood() {
  if constexpr (!M::has_latent)
    return true;
  else if constexpr (requires { M::posterior_policy::stochastic; })
    return M::posterior_policy::stochastic;
  else
    return true;
}
}  // namespace detail

template <class M>
NllReport evaluate_nll(M& model, const std::vector<std::vector<int32_t>>& sentences, int samples, uint64_t seed,
                       size_t max_sentences = size_t(-1), int batch_size = 32,
                       const std::function<void(size_t, size_t)>& progress = {}) {
  require(samples >= 1, "evaluate_nll: samples must be >= 1");
  if constexpr (detail::exact_likelihood<M>() || !detail::has_likelihood<M>()) samples = 1;
  using B = typename M::backend;
  Context<B> ctx(seed, /*training=*/false);
  const auto batches = sequential_batches(sentences, batch_size, model.config().vocab_size, max_sentences);
  NllReport r;
  r.samples = samples;
  r.has_nll = detail::has_likelihood<M>();
  double sum_nll = 0, sum_kl = 0, sum_rec = 0, sum_rec_c = 0;
  size_t total = 0;
  for (const auto& b : batches) total += size_t(b.size());
  for (const auto& b : batches) {
    const ImportanceTerms it = model.importance_weights(ctx, b, samples);
    for (int i = 0; i < it.batch; ++i) {
      const double* lw = &it.log_weight[size_t(i) * samples];
      const double m = *std::max_element(lw, lw + samples);
      double s = 0;
      for (int k = 0; k < samples; ++k) s += std::exp(lw[k] - m);
      sum_nll += -(m + std::log(s) - std::log(double(samples)));
      for (int k = 0; k < samples; ++k) {
        sum_kl += it.log_ratio[size_t(i) * samples + k] / samples;
        sum_rec += it.rec[size_t(i) * samples + k] / samples;
      }
    }
    if constexpr (M::is_coupled) {
      for (double v : model.deterministic_rec(ctx, b)) sum_rec_c += v;
      r.has_rec_c = true;
    }
    r.sentences += b.size();
    r.tokens += b.target_tokens();
    if (progress) progress(size_t(r.sentences), total);
  }
  const double n = double(r.sentences);
  r.nll = sum_nll / n;
  r.kl = sum_kl / n;
  r.rec = sum_rec / n;
  r.rec_c = sum_rec_c / n;
  r.ppl = std::exp(sum_nll / double(r.tokens));
  return r;
}

}  // namespace couplevae
