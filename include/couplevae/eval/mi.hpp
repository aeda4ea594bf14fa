// couplevae/eval/mi.hpp: the mutual information I(x; z) of the posterior (reference.md §13 "MI",
// the authors' Experiment.estimate_mi / importance_sampling_mi; paper App. E).
//
// The sentences are read in corpus order, in batches of `batch` (513 by default). In
// evaluation mode, for every sentence x_i of a batch of B sentences:
//   z_{i,s} ~ q(z | x_i),  s = 1..N                                   (N = samples, 100)
//   log q(z) ~= logsumexp_{j != i} log q(z | x_j) - log(B - 1)         (self term excluded,
//                                                                      M = B - 1 = 512 others)
//   MI_i = (1/N) sum_s [log q(z_{i,s} | x_i) - log q(z_{i,s})]
//   MI   = mean of MI_i over the sentences
// log q(z | x_j) comes from the posterior's log_density (posterior/*.hpp): a diagonal
// Gaussian, the flow density q_K(z_K | x_j) = q0(z0 | x_j) - sum logdet (the flows are
// unconditional, §3), or the vMF density with its normaliser. The estimate is biased upwards
// by O(1/M) (Jensen on the logarithm of the mixture estimate) and may come out slightly
// negative near MI = 0 (estimator variance; reference.md §16 item 2).
//
// Edges. A batch of one sentence (the last one, when the count is 1 more than a multiple of
// `batch`) has no other sentence to estimate q(z) from: it is skipped, and MI is the mean over
// the remaining sentences. Fewer than two sentences in every batch is an Error. The GRU-LM
// (no latent) and the DAE (Posterior<Deterministic>: no density) are rejected at compile time.
//
// Cost and memory. Per batch and sample: one posterior sample for the B rows and a (B, B)
// matrix of log-densities (O(B^2 Z)); the samples are processed one at a time, so memory is
// B^2 scalars (2 MB for B = 513 in double) whatever N is. Noise comes from one Context(seed)
// shared by all batches: the same (model, sentences, samples, batch, seed) gives the same
// number.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "../core/batch.hpp"
#include "../core/buffer.hpp"
#include "../core/context.hpp"
#include "../core/error.hpp"
#include "../data/batcher.hpp"

namespace couplevae {

namespace detail {
// Models whose posterior has a density: a latent path and a stochastic family.
template <class M>
constexpr bool mi_applicable() {
  if constexpr (!M::has_latent)
    return false;
  else if constexpr (requires { M::posterior_policy::stochastic; })
    return M::posterior_policy::stochastic;
  else
    return true;
}
}  // namespace detail

// MI_i of every sentence of one batch (B >= 2), in the batch's sorted order (sentence i of
// the caller's list is result[k] with batch.order[k] = i). Draws `samples` posterior samples
// per sentence from ctx.rng; the caller chooses the mode (ctx.training = false for the
// paper's numbers). Leaves the model's encoder state on this batch.
template <class M>
std::vector<double> mutual_information_terms(M& model, Context<typename M::backend>& ctx, const Batch& batch,
                                             int samples) {
  static_assert(detail::mi_applicable<M>(),
                "couplevae: the MI estimator needs a model with a stochastic posterior (Posterior<Gaussian>, "
                "Posterior<Flow<K>> or Posterior<VMF>); the GRU-LM has no latent and the DAE's "
                "Posterior<Deterministic> has no density");
  using T = typename M::scalar;
  using B = typename M::backend;
  const int nb = batch.size();
  require(samples >= 1, "mutual_information_terms: samples must be >= 1 (got " + std::to_string(samples) + ")");
  require(nb >= 2, "mutual_information_terms: a batch needs at least 2 sentences (got " + std::to_string(nb) +
                       "): q(z) is estimated from the other sentences");
  std::vector<double> mi(size_t(nb), 0.0);
  if constexpr (detail::mi_applicable<M>()) {
    const View<T> e = model.encode_batch(ctx, batch);
    typename M::posterior_module::Cache cache;
    Buffer<T, B> dens;
    const View<T> out = dens.shape(nb, nb);
    const double log_others = std::log(double(nb - 1));
    std::vector<double> row(static_cast<size_t>(nb));
    for (int s = 0; s < samples; ++s) {
      model.post.sample(ctx, model.arena(), e, cache);
      model.post.log_density(ctx, cache, cache, out);  // out[i, j] = log q(z_i | x_j)
      const std::vector<T> h = dens.to_host();
      for (int i = 0; i < nb; ++i) {
        const T* r = h.data() + size_t(i) * nb;
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < nb; ++j)
          if (j != i) mx = std::max(mx, double(r[j]));
        double sum = 0;
        for (int j = 0; j < nb; ++j)
          if (j != i) sum += std::exp(double(r[j]) - mx);
        const double log_qz = mx + std::log(sum) - log_others;
        mi[size_t(i)] += (double(r[i]) - log_qz) / samples;
      }
    }
  }
  return mi;
}

// The MI of reference.md §13 over the first max_sentences sentences (all by default), in
// corpus order and batches of `batch`, with `samples` posterior samples per sentence, in
// evaluation mode, noise from Context(seed). progress(done, total) is called after every
// batch (done counts sentences, skipped ones included). Batches of one sentence are skipped
// (see the header); throws Error when no batch has two sentences.
template <class M>
double evaluate_mi(M& model, const std::vector<std::vector<int32_t>>& sentences, int samples = 100, int batch = 513,
                   uint64_t seed = 0, size_t max_sentences = size_t(-1),
                   const std::function<void(size_t, size_t)>& progress = {}) {
  static_assert(detail::mi_applicable<M>(),
                "couplevae: evaluate_mi needs a model with a stochastic posterior (Posterior<Gaussian>, "
                "Posterior<Flow<K>> or Posterior<VMF>); the GRU-LM has no latent and the DAE's "
                "Posterior<Deterministic> has no density");
  require(samples >= 1, "evaluate_mi: samples must be >= 1 (got " + std::to_string(samples) + ")");
  require(batch >= 2, "evaluate_mi: batch must be >= 2 (got " + std::to_string(batch) +
                          "): q(z) is estimated from the other sentences of a batch");
  using B = typename M::backend;
  Context<B> ctx(seed, /*training=*/false);
  const auto batches = sequential_batches(sentences, batch, model.config().vocab_size, max_sentences);
  size_t total = 0, done = 0, used = 0;
  for (const auto& b : batches) total += size_t(b.size());
  double sum = 0;
  for (const auto& b : batches) {
    if (b.size() >= 2) {
      for (double v : mutual_information_terms(model, ctx, b, samples)) sum += v;
      used += size_t(b.size());
    }
    done += size_t(b.size());
    if (progress) progress(done, total);
  }
  require(used > 0, "evaluate_mi: no batch holds two sentences (" + std::to_string(total) +
                        " sentence(s)); MI needs other sentences to estimate q(z)");
  return sum / double(used);
}

}  // namespace couplevae
