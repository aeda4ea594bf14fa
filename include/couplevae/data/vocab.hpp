// couplevae/data/vocab.hpp: the word <-> id table of a corpus (reference.md §1).
//
// Ids 0..3 are the reserved <pad> <go> <eos> <unk>; then come the words of the TRAIN split in
// the order they first occur (min count 1 by default, which reproduces the authors' vocab
// pickles: PTB 10,002 entries, Yelp 15,002, Yahoo 20,001). Optional caps:
//
//   min_count  words seen fewer times in train are left out (they encode as <unk>);
//   max_size   at most max_size entries in all (reserved ids included): the most frequent
//              words are kept, ties going to the word that occurs first; the kept words
//              stay in first-occurrence order.
//
// Reserved tokens that appear literally in the text (PTB's "<unk>") are not new words:
// "<unk>" is id 3. The literal "<pad>", "<go>" and "<eos>" are looked up by id() as their
// reserved ids, but encode() maps them to <unk>, so an encoded sentence only ever holds
// <unk> or ordinary words (what make_batch accepts). Yahoo's literal "_UNK" is an ordinary
// word, distinct from <unk>. Words outside the table encode as <unk>.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/batch.hpp"
#include "../core/error.hpp"

namespace couplevae {

struct VocabOptions {
  size_t max_size = 0;  // 0: no cap; otherwise the total size, reserved ids included (>= 4)
  int min_count = 1;    // >= 1
};

namespace detail {

inline constexpr std::string_view reserved_words[4] = {"<pad>", "<go>", "<eos>", "<unk>"};

// Hash that accepts std::string and std::string_view alike (heterogeneous lookup).
struct word_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

inline bool is_word_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline int32_t reserved_index(std::string_view w) {
  for (int32_t i = 0; i < 4; ++i)
    if (reserved_words[i] == w) return i;
  return -1;
}

}  // namespace detail

class Vocab {
 public:
  // Only the four reserved entries.
  Vocab() {
    for (auto w : detail::reserved_words) add(std::string(w));
  }

  // Builds the table from the tokenised train split.
  static Vocab build(const std::vector<std::vector<std::string>>& train_sentences,
                     const VocabOptions& options = {}) {
    require(options.min_count >= 1,
            "vocab: min_count must be at least 1 (got " + std::to_string(options.min_count) + ")");
    require(options.max_size == 0 || options.max_size >= 4,
            "vocab: max_size must be 0 (no cap) or at least 4 for <pad> <go> <eos> <unk> (got " +
                std::to_string(options.max_size) + ")");
    // Distinct ordinary words in first-occurrence order, with their counts.
    std::unordered_map<std::string_view, size_t> index;
    std::vector<std::string_view> order;
    std::vector<long> count;
    for (const auto& sentence : train_sentences)
      for (const auto& w : sentence) {
        if (detail::reserved_index(w) >= 0) continue;
        auto [it, inserted] = index.try_emplace(std::string_view(w), order.size());
        if (inserted) {
          order.push_back(w);
          count.push_back(0);
        }
        ++count[it->second];
      }
    std::vector<size_t> keep;
    for (size_t i = 0; i < order.size(); ++i)
      if (count[i] >= options.min_count) keep.push_back(i);
    if (options.max_size != 0 && keep.size() > options.max_size - 4) {
      // Most frequent first; stable_sort keeps first occurrence first among equal counts.
      std::stable_sort(keep.begin(), keep.end(),
                       [&](size_t a, size_t b) { return count[a] > count[b]; });
      keep.resize(options.max_size - 4);
      std::sort(keep.begin(), keep.end());
    }
    Vocab v;
    v.words_.reserve(4 + keep.size());
    for (size_t i : keep) v.add(std::string(order[i]));
    return v;
  }

  // A table from its word list (as saved with a checkpoint). The first four words must be
  // <pad> <go> <eos> <unk>; words must be distinct, non-empty and free of whitespace.
  static Vocab from_words(std::vector<std::string> words) {
    require(words.size() >= 4, "vocab: a word list needs at least the 4 reserved words, got " +
                                   std::to_string(words.size()) + " words");
    for (int i = 0; i < 4; ++i)
      require(words[i] == detail::reserved_words[i],
              "vocab: word " + std::to_string(i) + " must be '" +
                  std::string(detail::reserved_words[i]) + "', got '" + words[i] + "'");
    Vocab v;
    v.words_.reserve(words.size());
    for (size_t i = 4; i < words.size(); ++i) {
      std::string& w = words[i];
      require(!w.empty(), "vocab: word " + std::to_string(i) + " is empty");
      require(std::none_of(w.begin(), w.end(),
                           [](char c) { return detail::is_word_space(static_cast<unsigned char>(c)); }),
              "vocab: word " + std::to_string(i) + " ('" + w + "') contains whitespace");
      if (auto found = v.index_.find(std::string_view(w)); found != v.index_.end())
        throw Error("vocab: word " + std::to_string(i) + " ('" + w + "') duplicates word " +
                    std::to_string(found->second));
      v.add(std::move(w));
    }
    return v;
  }

  // The id of a word; <unk> (3) for a word outside the table.
  int32_t id(std::string_view word) const {
    auto it = index_.find(word);
    return it == index_.end() ? unk_id : it->second;
  }
  bool contains(std::string_view word) const { return index_.find(word) != index_.end(); }

  const std::string& word(int32_t id) const {
    require(id >= 0 && size_t(id) < words_.size(),
            "vocab: id " + std::to_string(id) + " is outside [0, " + std::to_string(words_.size()) + ")");
    return words_[size_t(id)];
  }

  size_t size() const { return words_.size(); }
  const std::vector<std::string>& words() const { return words_; }

  // Token ids of one sentence: unknown words and literal <pad>/<go>/<eos> become <unk>.
  std::vector<int32_t> encode(const std::vector<std::string>& sentence) const {
    std::vector<int32_t> ids;
    ids.reserve(sentence.size());
    for (const auto& w : sentence) {
      int32_t i = id(w);
      ids.push_back(i < unk_id ? unk_id : i);
    }
    return ids;
  }
  std::vector<std::vector<int32_t>> encode_all(
      const std::vector<std::vector<std::string>>& corpus) const {
    std::vector<std::vector<int32_t>> out;
    out.reserve(corpus.size());
    for (const auto& s : corpus) out.push_back(encode(s));
    return out;
  }

  // Words joined by single spaces; stops at the first <eos>, skips <pad> and <go>.
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t i : ids) {
      if (i == eos_id) break;
      if (i == pad_id || i == go_id) continue;
      const std::string& w = word(i);
      if (!out.empty()) out += ' ';
      out += w;
    }
    return out;
  }

  friend bool operator==(const Vocab& a, const Vocab& b) { return a.words_ == b.words_; }

 private:
  void add(std::string w) {
    index_.emplace(w, int32_t(words_.size()));
    words_.push_back(std::move(w));
  }

  std::vector<std::string> words_;
  std::unordered_map<std::string, int32_t, detail::word_hash, std::equal_to<>> index_;
};

}  // namespace couplevae
