// couplevae/regularizer/annealing.hpp: the KL weight schedule (reference.md §7).
//
//   lambda_KL(t) = clip((t - start) / steps, 0, cap), rounded to 6 decimals,
// with t = 1, 2, ... the training step, start = 2000 (1000 for the VAE families on Yelp and
// Yahoo), steps = 40000 and cap = 1 (beta for Regularizer<Beta>, 0.8 inside the WAE). A
// negative start begins above 0: the Lagging-VAE presets use He et al.'s schedule, from 0.1
// at step 0 to 1 after 10 epochs (model/registry.hpp).
#pragma once
#include <algorithm>
#include <cmath>

namespace couplevae {

inline double kl_weight(long step, long start, long steps, double cap) {
  const double w = std::clamp(double(step - start) / double(steps), 0.0, cap);
  return std::round(w * 1e6) / 1e6;
}

}  // namespace couplevae
