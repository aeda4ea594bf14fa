// tests/fixtures.hpp: the tiny corpus and model sizes shared by the training tests
// (test_train, test_dynamics, test_lagging): nine training sentences over four words, split
// into batches of 4 (epochs of 3 steps), and a model small enough to train in milliseconds.
#pragma once
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>

namespace fixtures {

// The nine training sentences and the given validation sentences (also the test split).
inline couplevae::Dataset tiny_corpus(const std::vector<std::vector<std::string>>& valid) {
  const std::vector<std::vector<std::string>> train = {{"a", "b", "c"}, {"b", "c"}, {"c", "a", "d", "b"},
                                                       {"d"}, {"a", "a", "b"}, {"b", "d", "c", "a", "b"},
                                                       {"c", "c"}, {"d", "a"}, {"a", "b", "d"}};
  couplevae::Dataset d;
  d.vocab = couplevae::Vocab::build(train);
  d.train = d.vocab.encode_all(train);
  d.valid = d.vocab.encode_all(valid);
  d.test = d.valid;
  return d;
}

// `base` at tiny sizes (embedding 8, encoder 6, latent 3, batches of 4, KL ramp of 10 steps)
// for a vocabulary of `vocab` words; schedules and validation are the caller's.
inline couplevae::Config tiny_sizes(couplevae::Config base, int vocab) {
  base.vocab_size = vocab;
  base.embed = 8;
  base.hidden = 6;
  base.latent = 3;
  base.batch_size = 4;
  base.kl_anneal_steps = 10;
  return base;
}

}  // namespace fixtures
