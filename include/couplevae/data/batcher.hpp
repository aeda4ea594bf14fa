// couplevae/data/batcher.hpp: training batches in shuffled order, and evaluation batches.
//
// Batcher follows the authors' loader (reference.md §1): batches of 32 sentences by default,
// a fresh shuffle every epoch, the last partial batch kept, no bucketing by length. The
// shuffle of epoch e is a Fisher-Yates permutation drawn from a counter-based stream that
// depends only on (seed, e), so the whole state is (epoch, position): restore() puts a
// resumed run on exactly the batches the original run would have seen.
//
// next() packs the next sentences with make_batch(). Epochs advance eagerly: after the
// batch that finishes an epoch, epoch() has already moved on and position() is 0, so a
// trainer detects the end of an epoch by the change of epoch().
//
// sequential_batches() cuts a split into batches in corpus order, for evaluation.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../core/batch.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace couplevae {

namespace detail {

// Label that separates the batcher's streams from other users of the same seed ("batcher").
inline constexpr uint64_t batcher_stream = 0x0062617463686572ull;

inline void check_sentences(const std::vector<std::vector<int32_t>>& sentences, int vocab_size,
                            const char* who) {
  require(!sentences.empty(), std::string(who) + ": no sentences");
  require(vocab_size >= 4, std::string(who) + ": vocab_size must cover the 4 reserved ids (got " +
                              std::to_string(vocab_size) + ")");
  for (size_t i = 0; i < sentences.size(); ++i) {
    require(!sentences[i].empty(), std::string(who) + ": sentence " + std::to_string(i) + " is empty");
    for (int32_t id : sentences[i])
      require(id == unk_id || (id > unk_id && id < vocab_size),
              std::string(who) + ": sentence " + std::to_string(i) + " holds token id " +
                  std::to_string(id) + ", outside [4, " + std::to_string(vocab_size) +
                  ") and not <unk>=3");
  }
}

}  // namespace detail

class Batcher {
 public:
  Batcher(std::vector<std::vector<int32_t>> sentences, int vocab_size, uint64_t seed,
          int batch_size = 32)
      : sentences_(std::move(sentences)), vocab_size_(vocab_size), batch_size_(batch_size), seed_(seed) {
    require(batch_size >= 1, "Batcher: batch size must be at least 1 (got " +
                                 std::to_string(batch_size) + ")");
    detail::check_sentences(sentences_, vocab_size, "Batcher");
    order_ = permutation(0);
  }

  // The order of epoch `epoch`: a pure function of (seed, epoch).
  std::vector<size_t> permutation(uint64_t epoch) const {
    std::vector<size_t> p(sentences_.size());
    std::iota(p.begin(), p.end(), size_t(0));
    Rng rng = Rng(seed_).derive(detail::batcher_stream).derive(epoch);
    for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[size_t(rng.below(i))]);
    return p;
  }

  // The next batch; moves to the next epoch after its last batch.
  Batch next() {
    const size_t n = sentences_.size();
    const size_t take = std::min(size_t(batch_size_), n - position_);
    last_.assign(order_.begin() + std::ptrdiff_t(position_),
                 order_.begin() + std::ptrdiff_t(position_ + take));
    std::vector<std::vector<int32_t>> chosen;
    chosen.reserve(take);
    for (size_t i : last_) chosen.push_back(sentences_[i]);
    position_ += take;
    if (position_ == n) {
      ++epoch_;
      position_ = 0;
      order_ = permutation(epoch_);
    }
    return make_batch(chosen, vocab_size_, bucket_);
  }

  // Batches made from now on are bucketed by q (core/batch.hpp; 0: packed). The order of
  // sentences is unchanged.
  void set_bucket(int q) {
    require(q >= 0, "Batcher: bucket must be >= 0 (got " + std::to_string(q) + ")");
    bucket_ = q;
  }

  // Corpus indices of the sentences of the last batch, in the order given to make_batch
  // (so sentence i of that batch's `order` is last_indices()[batch.order[i]]).
  const std::vector<size_t>& last_indices() const { return last_; }

  uint64_t epoch() const { return epoch_; }
  size_t position() const { return position_; }

  // Continue from a saved (epoch, position); position < size().
  void restore(uint64_t epoch, size_t position) {
    require(position < sentences_.size(),
            "Batcher: cannot restore position " + std::to_string(position) + " of an epoch of " +
                std::to_string(sentences_.size()) + " sentences");
    if (epoch != epoch_) order_ = permutation(epoch);
    epoch_ = epoch;
    position_ = position;
    last_.clear();
  }

  size_t batches_per_epoch() const { return (sentences_.size() + size_t(batch_size_) - 1) / size_t(batch_size_); }
  size_t size() const { return sentences_.size(); }
  int batch_size() const { return batch_size_; }
  int vocab_size() const { return vocab_size_; }
  uint64_t seed() const { return seed_; }
  const std::vector<std::vector<int32_t>>& sentences() const { return sentences_; }

 private:
  std::vector<std::vector<int32_t>> sentences_;
  int vocab_size_;
  int batch_size_;
  uint64_t seed_;
  int bucket_ = 0;
  uint64_t epoch_ = 0;
  size_t position_ = 0;
  std::vector<size_t> order_;  // permutation(epoch_)
  std::vector<size_t> last_;
};

// Batches of the first max_sentences sentences (all by default) in corpus order; the last
// one may be partial. Batch k holds sentences [k * batch_size, (k + 1) * batch_size).
inline std::vector<Batch> sequential_batches(const std::vector<std::vector<int32_t>>& sentences,
                                             int batch_size, int vocab_size,
                                             size_t max_sentences = std::numeric_limits<size_t>::max()) {
  require(batch_size >= 1, "sequential_batches: batch size must be at least 1 (got " +
                               std::to_string(batch_size) + ")");
  require(max_sentences >= 1, "sequential_batches: max_sentences must be at least 1");
  detail::check_sentences(sentences, vocab_size, "sequential_batches");
  const size_t n = std::min(sentences.size(), max_sentences);
  std::vector<Batch> out;
  out.reserve((n + size_t(batch_size) - 1) / size_t(batch_size));
  for (size_t start = 0; start < n; start += size_t(batch_size)) {
    const size_t end = std::min(n, start + size_t(batch_size));
    std::vector<std::vector<int32_t>> chunk(sentences.begin() + std::ptrdiff_t(start),
                                            sentences.begin() + std::ptrdiff_t(end));
    out.push_back(make_batch(chunk, vocab_size));
  }
  return out;
}

}  // namespace couplevae
