// couplevae/core/context.hpp: the runtime state passed to every forward and backward.
//
// Context<B> holds what is not a parameter: the counter-based generator every noise draw
// comes from (dropout masks, reparameterisation noise, prior samples), and whether the
// call is in training mode (dropout on, BatchNorm batch statistics) or evaluation mode.
// The cuda backend adds its stream and library handles here.
#pragma once
#include <cstdint>

#include "../backend/tags.hpp"
#include "rng.hpp"

namespace couplevae {

template <class B = cpu>
struct Context {
  Rng rng;
  bool training = true;

  Context() = default;
  explicit Context(uint64_t seed, bool train = true) : rng(seed), training(train) {}
};

}  // namespace couplevae
