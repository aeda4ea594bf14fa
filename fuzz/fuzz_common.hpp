// fuzz_common.hpp: what the libFuzzer targets share.
//
// A target feeds its bytes to one reader of the library. The reader may refuse them, but
// only with a couplevae::Error (the one-line message the tool prints with exit code 2);
// any other exception, a crash, a sanitizer report, a leak or a hang is a finding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <couplevae/config.hpp>
#include <couplevae/core/error.hpp>
#include <couplevae/data/vocab.hpp>

namespace couplevae::fuzz {

// Stops the run (a finding) when an invariant the library promises does not hold.
inline void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

// Runs f; a couplevae::Error is the accepted way to refuse bad input.
template <class F>
int refuse_or_accept(F&& f) {
  try {
    f();
  } catch (const couplevae::Error& e) {
    expect(std::string_view(e.what()).find('\n') == std::string_view::npos, "an error message spans several lines");
  }
  return 0;
}

// The small model and vocabulary of the checkpoint target and of its seed checkpoints
// (make_seeds.cpp), so that mutated seeds reach the deepest checks of load_checkpoint.
inline Vocab tiny_vocab() { return Vocab::from_words({"<pad>", "<go>", "<eos>", "<unk>", "the", "cat", "sat"}); }

inline Config tiny_config() {
  Config c = Config::preset("ptb");
  c.vocab_size = 7;
  c.embed = 3;
  c.hidden = 2;
  c.latent = 2;
  c.validate();
  return c;
}

}  // namespace couplevae::fuzz
