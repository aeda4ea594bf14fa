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
//
// Bucketed batches (make_batch(..., bucket = q > 0)): every sentence runs the same number of
// steps, the longest length rounded up to a multiple of q (plus 2 for the decoder), so the
// shapes of a step depend only on (batch size, bucket) and a captured CUDA Graph can be
// replayed for every batch of the bucket (backend/cuda/graph.cuh). Such a Packing is a
// rectangle (padded = true, active[t] = batch): row (t, b) with t >= n_b is padding. Its
// tokens are <pad>, its targets -1 (no loss), and the GRU carries the state through it
// unchanged (keep[row] = 0: z = 1, nn/gru.hpp), so losses and gradients equal the packed
// batch's; only the noise of dropout differs (more rows draw from the generator).
//
// The vocabulary layer runs on Batch::outputs (nn/vocab_loss.hpp): the decoder rows of steps
// >= 1, numbered from 0 (dec row - batch). A packed batch uses all of them in order (identity).
// A bucketed batch uses only its real rows, in row order, followed by filler rows (source 0,
// target -1: no loss, no gradient) up to compact_rows() + batch: the largest layer of the
// model then runs on real tokens plus at most 4 fillers per sentence, instead of the padded
// rectangle, and its shape depends only on that count (a CUDA Graph key, graph.cuh). The
// GRUs' GEMMs over all rows do the same with Packing::real_rows.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
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
  std::vector<int> item_steps;  // n_b, non-increasing
  bool padded = false;          // a rectangle: every item runs `steps` steps, padding after n_b
  std::vector<int32_t> keep;    // padded: keep[row] = 1 for real rows, 0 for padding; else empty
  // padded: the real rows in row order, then -1 (fillers) up to the rectangle's compact row
  // count: what the GEMMs over all rows run on (nn/gru.hpp), so padding costs them nothing.
  std::vector<int32_t> real_rows;

  // steps_per_item must be sorted in non-increasing order, every entry >= 1.
  static Packing from_steps(const std::vector<int>& steps_per_item) {
    require_sorted(steps_per_item, "Packing::from_steps");
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
    p.item_steps = steps_per_item;
    return p;
  }
  // The padded rectangle of `steps` >= n_0 steps over the same items, whose real rows are
  // listed in `compact` >= sum n_b entries (fillers after them).
  // The same order is required: the cuda kernels skip a tile of rows whose first row is padding.
  static Packing rectangle(const std::vector<int>& steps_per_item, int steps, int compact) {
    require_sorted(steps_per_item, "Packing::rectangle");
    require(steps_per_item.empty() || steps >= steps_per_item.front(), "Packing::rectangle: fewer steps than the longest item");
    Packing p;
    p.batch = int(steps_per_item.size());
    p.steps = p.batch ? steps : 0;
    p.active.assign(p.steps, p.batch);
    p.offset.resize(p.steps);
    for (int t = 0; t < p.steps; ++t) p.offset[t] = t * p.batch;
    p.rows = p.steps * p.batch;
    p.item_steps = steps_per_item;
    p.padded = true;
    p.keep.resize(p.rows);
    for (int t = 0; t < p.steps; ++t)
      for (int b = 0; b < p.batch; ++b)
        if ((p.keep[p.row(t, b)] = p.real(t, b) ? 1 : 0)) p.real_rows.push_back(p.row(t, b));
    require(int(p.real_rows.size()) <= compact, "Packing::rectangle: more real rows than the compact count");
    p.real_rows.resize(compact, -1);
    return p;
  }
  int row(int t, int b) const { return offset[t] + b; }
  // Whether row (t, b) is a real step of item b (always, unless padded).
  bool real(int t, int b) const { return t < item_steps[b]; }
  // The same items with their first step removed (n_b - 1 steps each, all >= 1): rows
  // shift by `batch` and keep their order.
  Packing drop_first_step() const {
    std::vector<int> s = item_steps;
    for (int& n : s) {
      require(n >= 2, "Packing::drop_first_step: an item has a single step");
      --n;
    }
    return padded ? rectangle(s, steps - 1, int(real_rows.size()) - batch) : from_steps(s);
  }

 private:
  static void require_sorted(const std::vector<int>& steps_per_item, const char* who) {
    require(std::is_sorted(steps_per_item.begin(), steps_per_item.end(), std::greater<>()),
            std::string(who) + ": the items' step counts must be in non-increasing order");
  }
};

// The rows of the vocabulary layer (see the top of this file), each with its source row (dec
// row - batch), its sentence and its target (-1: none).
struct OutputRows {
  bool identity = true;         // source[k] == k for every row (source is left empty then)
  std::vector<int32_t> source;  // (count) when !identity
  std::vector<int32_t> item;    // (count) sorted sentence index of each row
  std::vector<int32_t> target;  // (count) target id, -1 for filler and padding rows
  int count() const { return int(item.size()); }
};

// The steps of a bucketed encoder packing: the longest length rounded up to a multiple of q.
inline int bucket_steps(int longest, int q) { return (longest + q - 1) / q * q; }
// The compact row count of a bucketed batch of `batch` sentences with `tokens` tokens in all:
// tokens rounded up to a multiple of 4 x batch (at most 4 fillers per sentence). The encoder
// lists this many rows, the decoder 2 x batch more, its output rows batch more.
inline int compact_rows(long tokens, int batch) {
  const long q = 4L * batch;
  return int((tokens + q - 1) / q * q);
}

struct Batch {
  std::vector<int> lengths;  // L_b, sorted non-increasing
  std::vector<int> order;    // caller index of each sorted sentence
  Packing enc, dec;
  OutputRows outputs;                // the vocabulary layer's rows (see the top of this file)
  std::vector<int32_t> enc_tokens;   // (enc.rows)
  std::vector<int32_t> dec_inputs;   // (dec.rows); -1 on step 0
  std::vector<int32_t> dec_targets;  // (dec.rows); -1 on step 0
  int size() const { return int(lengths.size()); }
  // Predicted tokens: sum of (L_b + 1).
  long target_tokens() const {
    long n = 0;
    for (int l : lengths) n += l + 1;
    return n;
  }
  // The bucket's step count of a bucketed batch (enc.steps), 0 for a packed one.
  int bucket() const { return enc.padded ? enc.steps : 0; }
};

// Fills b.outputs from b.dec and b.dec_targets: every row of steps >= 1 of a packed decoder,
// the real ones plus fillers up to a multiple of 4 x batch of a padded one.
inline void make_outputs(Batch& b) {
  const Packing& pk = b.dec;
  OutputRows& o = b.outputs;
  o = OutputRows{};
  o.identity = !pk.padded;
  for (int t = 1; t < pk.steps; ++t)
    for (int i = 0; i < pk.active[t]; ++i) {
      if (!pk.real(t, i)) continue;
      const int r = pk.row(t, i);
      if (!o.identity) o.source.push_back(r - pk.batch);
      o.item.push_back(i);
      o.target.push_back(b.dec_targets[r]);
    }
  if (o.identity) return;
  const int count = int(pk.real_rows.size()) - pk.batch;  // the decoder's compact rows minus step 0
  o.source.resize(count, 0);
  o.item.resize(count, 0);
  o.target.resize(count, -1);
}

// Packs sentences of token ids. Every sentence needs at least one token and ids in
// [0, vocab_size); ids 0..3 are the reserved <pad> <go> <eos> <unk> and only <unk> may
// appear inside a sentence. bucket = q > 0 makes a bucketed batch (see above): the encoder
// runs bucket_steps(L_max, q) steps, the decoder 2 more.
inline Batch make_batch(const std::vector<std::vector<int32_t>>& sentences, int vocab_size, int bucket = 0) {
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
  require(bucket >= 0, "make_batch: bucket must be >= 0 (got " + std::to_string(bucket) + ")");
  if (bucket > 0) {
    const int steps = bucket_steps(b.lengths.front(), bucket);
    const int compact = compact_rows(std::accumulate(b.lengths.begin(), b.lengths.end(), 0L), n);
    b.enc = Packing::rectangle(enc_steps, steps, compact);
    b.dec = Packing::rectangle(dec_steps, steps + 2, compact + 2 * n);
  } else {
    b.enc = Packing::from_steps(enc_steps);
    b.dec = Packing::from_steps(dec_steps);
  }
  b.enc_tokens.assign(b.enc.rows, pad_id);
  for (int t = 0; t < b.enc.steps; ++t)
    for (int i = 0; i < b.enc.active[t]; ++i)
      if (b.enc.real(t, i)) b.enc_tokens[b.enc.row(t, i)] = sentences[b.order[i]][t];
  b.dec_inputs.assign(b.dec.rows, -1);
  b.dec_targets.assign(b.dec.rows, -1);
  for (int t = 1; t < b.dec.steps; ++t)
    for (int i = 0; i < b.dec.active[t]; ++i) {
      const int r = b.dec.row(t, i);
      if (!b.dec.real(t, i)) {
        b.dec_inputs[r] = pad_id;  // a valid embedding row; its gradient is 0
        continue;
      }
      const auto& s = sentences[b.order[i]];
      b.dec_inputs[r] = t == 1 ? go_id : s[t - 2];
      b.dec_targets[r] = t <= int(s.size()) ? s[t - 1] : eos_id;
    }
  make_outputs(b);
  return b;
}

// The sentences rows[0], rows[1], ... of b (indices into b's sorted order, repeats allowed;
// their lengths must be non-increasing, so the result is sorted too) as a packed batch;
// order maps to b's sorted index. b may be bucketed; the result is packed either way.
inline Batch select_rows(const Batch& b, const std::vector<int>& rows) {
  require(!rows.empty(), "select_rows: no rows");
  Batch r;
  const int n = int(rows.size());
  r.lengths.resize(n);
  r.order = rows;
  std::vector<int> enc_steps(n), dec_steps(n);
  for (int i = 0; i < n; ++i) {
    require(rows[i] >= 0 && rows[i] < b.size(), "select_rows: row " + std::to_string(rows[i]) + " is not in the batch");
    r.lengths[i] = b.lengths[rows[i]];
    require(i == 0 || r.lengths[i] <= r.lengths[i - 1], "select_rows: rows must keep lengths non-increasing");
    enc_steps[i] = r.lengths[i];
    dec_steps[i] = r.lengths[i] + 2;
  }
  r.enc = Packing::from_steps(enc_steps);
  r.dec = Packing::from_steps(dec_steps);
  auto copy = [&rows](const Packing& from, const Packing& to, const std::vector<int32_t>& src,
                      std::vector<int32_t>& dst) {
    dst.resize(to.rows);
    for (int t = 0; t < to.steps; ++t)
      for (int i = 0; i < to.active[t]; ++i) dst[to.row(t, i)] = src[from.row(t, rows[i])];
  };
  copy(b.enc, r.enc, b.enc_tokens, r.enc_tokens);
  copy(b.dec, r.dec, b.dec_inputs, r.dec_inputs);
  copy(b.dec, r.dec, b.dec_targets, r.dec_targets);
  make_outputs(r);
  return r;
}

// The rows of n sentences repeated k times, copies adjacent: row i is sentence i / k.
inline std::vector<int> replica_rows(int n, int k) {
  require(k >= 1, "replicate_batch: k must be >= 1");
  std::vector<int> rows(size_t(n) * k);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int(i / k);
  return rows;
}

// Each sentence of b repeated k times, copies adjacent: sentence i of the result is copy
// i % k of b's sorted sentence i / k (so the result is sorted too). Evaluation uses it to
// decode k importance samples of every sentence in one pass. order maps to b's sorted index
// (it is replica_rows(b.size(), k)).
inline Batch replicate_batch(const Batch& b, int k) { return select_rows(b, replica_rows(b.size(), k)); }

}  // namespace couplevae
