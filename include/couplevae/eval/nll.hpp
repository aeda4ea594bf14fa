// couplevae/eval/nll.hpp: importance-sampled NLL, KL, reconstruction and PPL (reference.md §13).
//
// For each sentence x, with N samples z_i ~ q(z|x) in evaluation mode:
//   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)
//   NLL_x   = -(logsumexp_i log w_i - log N)
//   KL_x    = mean_i [log q(z_i|x) - log p(z_i)]        (Monte Carlo, same samples)
//   rec_x   = mean_i [-log p(x|z_i)]
//   PPL     = exp(sum_x NLL_x / sum_x (L_x + 1))          (corpus-level)
// Reported nll, kl, rec are means over sentences; a Coupled model also reports rec_c, the
// deterministic path's -log p(x|z^c). Sentences are taken in corpus order, in batches of
// batch_size. Sample s of the corpus's sentence i draws its noise from its own stream
// (sentence_noise_id(i, s) under a key derived from seed, posterior/noise.hpp), so the
// result does not depend on batch_size, Config::eval_rows or how batches are shared among
// threads, only on (model, sentences, samples, seed), up to float rounding in the matrix
// products (SA-VAE's batch-wide SVI clipping aside). On the CPU, with
// OpenMP, `threads` workers (0: all of OpenMP's) each evaluate whole batches with a
// replica of the model (same parameters), one GEMM thread each: no fork/join per
// recurrent step. Sums are combined in batch order.
// The GRU-LM's likelihood is exact (one pass, no sampling); the DAE has no likelihood, so
// only rec (its cross-entropy) is reported and has_nll is false.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "../backend/tags.hpp"
#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../core/omp.hpp"
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

// A model with the same configuration and parameters (values of the whole arena, running
// statistics included), for a second evaluation thread.
template <class M>
std::unique_ptr<M> replica(const M& model) {
  auto copy = std::make_unique<M>(model.config(), 0);
  const auto values = model.arena().values().to_host();
  copy->arena().values().from_host(values.data(), values.size());
  return copy;
}

inline int eval_workers(int threads, size_t batches) {
  const int t = threads > 0 ? threads : omp::max_threads();
  return int(std::max<size_t>(1, std::min<size_t>(size_t(std::max(t, 1)), batches)));
}
}  // namespace detail

template <class M>
NllReport evaluate_nll(M& model, const std::vector<std::vector<int32_t>>& sentences, int samples, uint64_t seed,
                       size_t max_sentences = size_t(-1), int batch_size = 32,
                       const std::function<void(size_t, size_t)>& progress = {}, int threads = 0) {
  require(samples >= 1, "evaluate_nll: samples must be >= 1");
  if constexpr (detail::exact_likelihood<M>() || !detail::has_likelihood<M>()) samples = 1;
  using B = typename M::backend;
  const auto batches = sequential_batches(sentences, batch_size, model.config().vocab_size, max_sentences);
  NllReport r;
  r.samples = samples;
  r.has_nll = detail::has_likelihood<M>();
  r.has_rec_c = M::is_coupled;
  struct Sums {
    double nll = 0, kl = 0, rec = 0, rec_c = 0;
  };
  std::vector<Sums> sums(batches.size());
  size_t total = 0;
  std::vector<long> first(batches.size());  // each batch's first sentence in the corpus
  for (size_t j = 0; j < batches.size(); ++j) {
    first[j] = long(total);
    total += size_t(batches[j].size());
  }

  auto run_batch = [&](M& m, size_t j) {
    const Batch& b = batches[j];
    Context<B> ctx(seed, /*training=*/false);
    const ImportanceTerms it = m.importance_weights(ctx, b, samples, first[j]);
    Sums& s = sums[j];
    for (int i = 0; i < it.batch; ++i) {
      const double* lw = &it.log_weight[size_t(i) * samples];
      const double mx = *std::max_element(lw, lw + samples);
      double e = 0;
      for (int k = 0; k < samples; ++k) e += std::exp(lw[k] - mx);
      s.nll += -(mx + std::log(e) - std::log(double(samples)));
      for (int k = 0; k < samples; ++k) {
        s.kl += it.log_ratio[size_t(i) * samples + k] / samples;
        s.rec += it.rec[size_t(i) * samples + k] / samples;
      }
    }
    if constexpr (M::is_coupled)
      for (double v : m.deterministic_rec(ctx, b)) s.rec_c += v;
  };
  std::mutex progress_mutex;
  size_t done = 0;
  auto report = [&](size_t j) {
    std::lock_guard<std::mutex> lock(progress_mutex);
    done += size_t(batches[j].size());
    if (progress) progress(done, total);
  };

  const int workers = std::is_same_v<B, cpu> ? detail::eval_workers(threads, batches.size()) : 1;
  if (workers == 1) {
    for (size_t j = 0; j < batches.size(); ++j) {
      run_batch(model, j);
      report(j);
    }
  } else {
    std::vector<std::unique_ptr<M>> replicas(size_t(workers - 1));
    for (auto& p : replicas) p = detail::replica(model);
    std::exception_ptr failure;
    COUPLEVAE_OMP(parallel num_threads(workers))
    {
      const int w = omp::thread_num();
      M& m = w == 0 ? model : *replicas[size_t(w - 1)];
      COUPLEVAE_OMP(for schedule(dynamic, 1))
      for (long j = 0; j < long(batches.size()); ++j) {
        try {
          run_batch(m, size_t(j));
          report(size_t(j));
        } catch (...) {
          COUPLEVAE_OMP(critical(couplevae_eval_failure))
          if (!failure) failure = std::current_exception();
        }
      }
    }
    if (failure) std::rethrow_exception(failure);
  }

  double sum_nll = 0, sum_kl = 0, sum_rec = 0, sum_rec_c = 0;
  for (size_t j = 0; j < batches.size(); ++j) {
    sum_nll += sums[j].nll, sum_kl += sums[j].kl, sum_rec += sums[j].rec, sum_rec_c += sums[j].rec_c;
    r.sentences += batches[j].size();
    r.tokens += batches[j].target_tokens();
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
