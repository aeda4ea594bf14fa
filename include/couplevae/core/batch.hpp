// couplevae/core/batch.hpp: a batch of sentences in packed, time-major layout.
//
// Sentences are sorted by length, longest first, so at every time step the sentences still
// running are a prefix of the batch. For per-sentence step counts n_0 >= n_1 >= ... a
// Packing stores active[t] = #{b : n_b > t} and offset[t] = sum_{t'<t} active[t']; the
// row of (t, b) is offset[t] + b. No row is ever spent on padding.
//
//   encoder : n_b = L_b       rows hold the tokens w_1..w_L
//   decoder : n_b = L_b + 2   step 0 is the [h;h] step (token -1), then inputs <go>, w_1..w_L;
//                             targets (steps >= 1) are w_1..w_L, <eos>
//
// make_batch() builds one from token ids in any order; `order[i]` is the caller's index of
// sorted sentence i, so per-sentence results map back with result[order[i]] = value[i].
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "error.hpp"

namespace couplevae {

// Reserved vocabulary ids (reference.md §1).
inline constexpr int32_t pad_id = 0, go_id = 1, eos_id = 2, unk_id = 3;

struct Packing {
  int batch = 0, steps = 0, rows = 0;
  std::vector<int> active, offset;

  // steps_per_item must be sorted in non-increasing order, every entry >= 1.
  static Packing from_steps(const std::vector<int>& steps_per_item) {
    Packing p;
    p.batch = int(steps_per_item.size());
    p.steps = p.batch ? steps_per_item.front() : 0;
    p.active.assign(p.steps, 0);
    p.offset.assign(p.steps, 0);
    int b = p.batch;
    for (int t = 0; t < p.steps; ++t) {
      while (b > 0 && steps_per_item[b - 1] <= t) --b;
      p.active[t] = b;
      p.offset[t] = p.rows;
      p.rows += b;
    }
    return p;
  }
  int row(int t, int b) const { return offset[t] + b; }
};

struct Batch {
  std::vector<int> lengths;  // L_b, sorted non-increasing
  std::vector<int> order;    // caller index of each sorted sentence
  Packing enc, dec;
  std::vector<int32_t> enc_tokens;   // (enc.rows)
  std::vector<int32_t> dec_inputs;   // (dec.rows); -1 on step 0
  std::vector<int32_t> dec_targets;  // (dec.rows); -1 on step 0
  int size() const { return int(lengths.size()); }
  // Predicted tokens: sum of (L_b + 1).
  long target_tokens() const { return long(dec.rows) - long(dec.batch); }
};

// Packs sentences of token ids. Every sentence needs at least one token and ids in
// [0, vocab_size); ids 0..3 are the reserved <pad> <go> <eos> <unk> and only <unk> may
// appear inside a sentence.
inline Batch make_batch(const std::vector<std::vector<int32_t>>& sentences, int vocab_size) {
  Batch b;
  const int n = int(sentences.size());
  require(n > 0, "make_batch: the batch is empty");
  b.order.resize(n);
  std::iota(b.order.begin(), b.order.end(), 0);
  std::stable_sort(b.order.begin(), b.order.end(), [&](int x, int y) {
    return sentences[x].size() > sentences[y].size();
  });
  std::vector<int> enc_steps(n), dec_steps(n);
  b.lengths.resize(n);
  for (int i = 0; i < n; ++i) {
    const auto& s = sentences[b.order[i]];
    require(!s.empty(), "make_batch: sentence " + std::to_string(b.order[i]) + " is empty");
    for (int32_t id : s)
      require(id >= 0 && id < vocab_size && (id == unk_id || id > unk_id),
              "make_batch: sentence " + std::to_string(b.order[i]) + " holds token id " +
                  std::to_string(id) + ", outside [4, " + std::to_string(vocab_size) +
                  ") and not <unk>=3");
    b.lengths[i] = int(s.size());
    enc_steps[i] = b.lengths[i];
    dec_steps[i] = b.lengths[i] + 2;
  }
  b.enc = Packing::from_steps(enc_steps);
  b.dec = Packing::from_steps(dec_steps);
  b.enc_tokens.resize(b.enc.rows);
  for (int t = 0; t < b.enc.steps; ++t)
    for (int i = 0; i < b.enc.active[t]; ++i) b.enc_tokens[b.enc.row(t, i)] = sentences[b.order[i]][t];
  b.dec_inputs.assign(b.dec.rows, -1);
  b.dec_targets.assign(b.dec.rows, -1);
  for (int t = 1; t < b.dec.steps; ++t)
    for (int i = 0; i < b.dec.active[t]; ++i) {
      const auto& s = sentences[b.order[i]];
      const int r = b.dec.row(t, i);
      b.dec_inputs[r] = t == 1 ? go_id : s[t - 2];
      b.dec_targets[r] = t <= int(s.size()) ? s[t - 1] : eos_id;
    }
  return b;
}

// Each sentence of b repeated k times, copies adjacent: sentence i of the result is copy
// i % k of b's sorted sentence i / k (so the result is sorted too). Evaluation uses it to
// decode k importance samples of every sentence in one pass. order maps to b's sorted index.
inline Batch replicate_batch(const Batch& b, int k) {
  require(k >= 1, "replicate_batch: k must be >= 1");
  Batch r;
  const int n = b.size();
  r.lengths.resize(size_t(n) * k);
  r.order.resize(size_t(n) * k);
  std::vector<int> enc_steps(size_t(n) * k), dec_steps(size_t(n) * k);
  for (int i = 0; i < n * k; ++i) {
    r.lengths[i] = b.lengths[i / k];
    r.order[i] = i / k;
    enc_steps[i] = r.lengths[i];
    dec_steps[i] = r.lengths[i] + 2;
  }
  r.enc = Packing::from_steps(enc_steps);
  r.dec = Packing::from_steps(dec_steps);
  auto copy = [k](const Packing& from, const Packing& to, const std::vector<int32_t>& src, std::vector<int32_t>& dst) {
    dst.resize(to.rows);
    for (int t = 0; t < to.steps; ++t)
      for (int i = 0; i < to.active[t]; ++i) dst[to.row(t, i)] = src[from.row(t, i / k)];
  };
  copy(b.enc, r.enc, b.enc_tokens, r.enc_tokens);
  copy(b.dec, r.dec, b.dec_inputs, r.dec_inputs);
  copy(b.dec, r.dec, b.dec_targets, r.dec_targets);
  return r;
}

}  // namespace couplevae
