// couplevae/regularizer/zero.hpp: Regularizer<Zero>, the DAE's absent regulariser
// (reference.md §5 "DAE", §7).
//
//   L_reg = 0,  weight = 0
// With Posterior<Deterministic> it makes the deterministic autoencoder:
//   using DAE = Model<Posterior<Deterministic>, Regularizer<Zero>, Decoder<GRU>>;
// whose loss is its reconstruction cross-entropy alone.
// forward: requires nothing of kl (B, 1) and z (B, Z); sets Cache.weight = 0, adds nothing
//   to out, draws no noise.
// backward: adds nothing (no gradient to kl, z or any parameter; it owns none).
#pragma once
#include <string>

#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/buffer.hpp"
#include "../core/context.hpp"
#include "../policies.hpp"

namespace couplevae {

template <>
struct Regularizer<Zero> {
  static constexpr const char* name = "zero";

  template <class T, class B>
  struct module {
    struct Cache {
      double weight = 0;
    };

    module() = default;
    module(Arena<T, B>&, const std::string&, const Config&) {}

    void forward(Context<B>&, long /*step*/, View<T> /*kl*/, View<T> /*z*/, double* /*out*/, Cache& c) const {
      c.weight = 0;
    }
    void backward(Context<B>&, View<T> /*kl*/, View<T> /*z*/, View<T> /*dkl*/, View<T> /*dz*/,
                  const Cache&) const {}
  };
};

}  // namespace couplevae
