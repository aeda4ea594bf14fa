// fuzz_vocab: the vocabulary (data/vocab.hpp), both ways it is made: built from tokenised
// text with caps, and read back from a checkpoint's JSON word list.
//
// Byte 0: min_count 1..4 (bits 0-1) and max_size 0 or 4..67 (bits 2-7); byte 1 picks the
// mode: even = the rest is text, split on whitespace into sentences of 8 words; odd = the
// rest is a JSON word list for Vocab::from_words. Invariants: id(word(i)) == i; at most
// max_size entries; encode() then decode() gives back every known word.
#include <sstream>

#include <nlohmann/json.hpp>

#include <couplevae/data/vocab.hpp>

#include "fuzz_common.hpp"

using namespace couplevae;

namespace {
void check_table(const Vocab& v) {
  fuzz::expect(v.size() >= 4, "fewer than the 4 reserved words");
  for (size_t i = 0; i < v.size(); ++i) fuzz::expect(v.id(v.word(int32_t(i))) == int32_t(i), "id(word(i)) != i");
  std::vector<std::string> words(v.words().begin() + 4, v.words().end());
  const auto ids = v.encode(words);
  std::string joined;
  for (const auto& w : words) joined += (joined.empty() ? "" : " ") + w;
  fuzz::expect(v.decode(ids) == joined, "decode(encode(words)) lost words");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  VocabOptions o;
  o.min_count = 1 + (data[0] & 3);
  o.max_size = (data[0] >> 2) == 0 ? 0 : 3 + (data[0] >> 2);
  const std::string rest(reinterpret_cast<const char*>(data + 2), size - 2);
  return fuzz::refuse_or_accept([&] {
    if (data[1] % 2 == 0) {
      std::vector<std::vector<std::string>> sentences(1);
      std::istringstream in(rest);
      for (std::string w; in >> w;) {
        if (sentences.back().size() == 8) sentences.emplace_back();
        sentences.back().push_back(w);
      }
      const Vocab v = Vocab::build(sentences, o);
      fuzz::expect(o.max_size == 0 || v.size() <= o.max_size, "more words than max_size");
      check_table(v);
    } else {
      const auto j = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
      if (!j.is_array()) return;
      std::vector<std::string> words;
      for (const auto& w : j) {
        if (!w.is_string()) return;
        words.push_back(w.get<std::string>());
      }
      const Vocab v = Vocab::from_words(words);
      fuzz::expect(v.words() == words, "from_words changed the list");
      check_table(v);
    }
  });
}
