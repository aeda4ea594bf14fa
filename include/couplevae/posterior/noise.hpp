// couplevae/posterior/noise.hpp: the reparameterisation noise of a posterior's sample().
//
// sample(ctx, ar, e, cache, noise) draws its noise (eps (B, Z) ~ N(0, I), or the vMF
// sampler's proposals) in one of two ways:
//   - from the context's generator at its running position (noise empty: training, and
//     every caller that names no rows), so restoring ctx.rng.position replays it;
//   - by row (noise = RowNoise{key, ids}, core/rng.hpp): row r reads the stream of ids[r], so
//     a row's sample depends on (key, its id) alone, not on the rows beside it. Evaluation
//     names row (sentence i, importance sample s) sentence_noise_id(i, s), which makes its
//     numbers independent of how sentences are batched and how many samples are decoded
//     together (Model::importance_weights, Model::reconstruct).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../backend/tags.hpp"
#include "../core/buffer.hpp"
#include "../core/context.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace couplevae {

// eps (rows, cols) ~ N(0, I): from ctx.rng, or by row when `noise` names the rows.
template <class T, class B>
void draw_normal(Context<B>& ctx, const RowNoise& noise, View<T> eps) {
  if (noise)
    ops<B>::normal_rows(noise, eps.rows, eps.cols, eps.data);
  else
    ops<B>::normal(ctx.rng, eps.data, eps.size());
}

// The stream id of importance sample s of the sentence with index i in its corpus.
inline uint64_t sentence_noise_id(long i, long s) {
  require(i >= 0 && i <= long(UINT32_MAX) && s >= 0 && s <= long(UINT32_MAX),
          "couplevae: sentence " + std::to_string(i) + ", sample " + std::to_string(s) +
              ": evaluation noise names at most 2^32 sentences and 2^32 samples each");
  return row_noise_id(uint32_t(i), uint32_t(s));
}

// The ids of k samples (s0 .. s0 + k - 1) of every sentence of a batch, copies adjacent as
// replicate_batch lays them out: row i * k + j is sample s0 + j of the batch's sorted
// sentence i, whose corpus index is first + order[i].
inline std::vector<uint64_t> sentence_noise_ids(const std::vector<int>& order, long first, long s0, int k) {
  std::vector<uint64_t> ids(order.size() * size_t(k));
  for (size_t i = 0; i < order.size(); ++i)
    for (int j = 0; j < k; ++j) ids[i * size_t(k) + size_t(j)] = sentence_noise_id(first + order[i], s0 + j);
  return ids;
}

// The key of one evaluation call: derived from the context's generator, which advances by
// one block (so two calls on one context draw independent noise).
template <class B>
uint64_t take_noise_key(Context<B>& ctx) {
  const uint64_t key = ctx.rng.derive(ctx.rng.position).seed;
  ctx.rng.position += 1;
  return key;
}

}  // namespace couplevae
