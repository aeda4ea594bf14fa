// couplevae/eval/grad_norms.hpp: the gradient-norm analysis of paper §3/§5.5, Table 4
// (reference.md §14).
//
// Over the sentences (batches of 16, training mode: dropout and posterior sampling on),
// with e the encoded text (the posterior's input) and every loss a sum over the batch:
//   grad_rec      ||dL_rec/de||            grad_rec_c    ||dL_rec^c/de||   (coupled)
//   grad_rec_sum  ||d(L_rec + L_rec^c)/de|| (coupled)
//   grad_reg      ||dKL/de|| (unweighted KL)
//   grad_h        ||dh/de||_F / ||h||  (h the stochastic decoding signal of the same sample)
// Each is the mean over sentences of the per-sentence plain norm; the *_sq values are the
// means of the squared norms (the authors' code never takes the square root, so Table 4
// prints those). grad_reg is absent for models without a regulariser's KL (the DAE).
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../core/context.hpp"
#include "../data/batcher.hpp"
#include "nll.hpp"

namespace couplevae {

struct GradNormReport {
  std::map<std::string, double> values;  // grad_rec, grad_rec_sq, ...
  long sentences = 0;
};

template <class M>
GradNormReport evaluate_grad_norms(M& model, const std::vector<std::vector<int32_t>>& sentences, uint64_t seed = 0,
                                   size_t max_sentences = size_t(-1), int batch_size = 16,
                                   const std::function<void(size_t, size_t)>& progress = {}) {
  static_assert(M::has_latent, "couplevae: the gradient-norm analysis needs an encoder and a latent path");
  using B = typename M::backend;
  Context<B> ctx(seed, /*training=*/true);
  const auto batches = sequential_batches(sentences, batch_size, model.config().vocab_size, max_sentences);
  size_t total = 0;
  for (const auto& b : batches) total += size_t(b.size());
  std::map<std::string, double> sum, sum_sq;
  GradNormReport r;
  constexpr bool stochastic = detail::has_likelihood<M>();
  for (const auto& b : batches) {
    const GradNormTerms g = model.gradient_norms(ctx, b);
    auto add = [&](const char* name, const std::vector<double>& sq) {
      for (double v : sq) sum[name] += std::sqrt(v), sum_sq[name] += v;
    };
    add("grad_rec", g.rec);
    if (stochastic) add("grad_reg", g.reg);
    add("grad_h", g.h_ratio);
    if constexpr (M::is_coupled) {
      add("grad_rec_c", g.rec_c);
      add("grad_rec_sum", g.rec_sum);
    }
    r.sentences += b.size();
    if (progress) progress(size_t(r.sentences), total);
  }
  model.zero_grad();
  for (const auto& [k, v] : sum) {
    r.values[k] = v / double(r.sentences);
    r.values[k + "_sq"] = sum_sq[k] / double(r.sentences);
  }
  return r;
}

}  // namespace couplevae
