// fuzz_corpus: the corpus reader (data/corpus.hpp) and what follows it when training
// starts: the vocabulary built from the sentences, their encoding and a packed batch.
//
// Byte 0 picks the options (bit 0: drop_label; bits 1-7: max_len 1..128); the rest is the
// file. Invariants: sentences are non-empty, at most max_len tokens, free of whitespace;
// every encoded id is a vocabulary id; a batch of the first sentences packs them all.
#include <algorithm>
#include <sstream>

#include <couplevae/core/batch.hpp>
#include <couplevae/data/corpus.hpp>

#include "fuzz_common.hpp"

using namespace couplevae;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  CorpusOptions o;
  o.drop_label = data[0] & 1;
  o.max_len = 1 + (data[0] >> 1);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  std::streambuf* err = std::cerr.rdbuf(nullptr);  // the truncation warning is expected output
  const int rc = fuzz::refuse_or_accept([&] {
    const auto sentences = read_corpus(in, "fuzz.txt", o);
    for (const auto& s : sentences) {
      fuzz::expect(!s.empty() && s.size() <= size_t(o.max_len), "a sentence is empty or longer than max_len");
      for (const auto& w : s)
        fuzz::expect(!w.empty() && w.find_first_of(" \t\r\n") == std::string::npos, "a token holds whitespace");
    }
    const Vocab v = Vocab::build(sentences);
    const auto ids = v.encode_all(sentences);
    for (const auto& s : ids)
      for (int32_t i : s) fuzz::expect(i >= unk_id && size_t(i) < v.size(), "an encoded id is out of range");
    const std::vector<std::vector<int32_t>> first(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 32));
    const Batch b = make_batch(first, int(v.size()));
    fuzz::expect(b.lengths.size() == first.size(), "the batch lost sentences");
  });
  std::cerr.rdbuf(err);
  return rc;
}
