// couplevae/policies.hpp: the policy tags of the design card.
//
//   Posterior<Gaussian | Flow<K> | VMF>   q(z|x) and its deterministic code (Appendix B)
//             (and Deterministic, the DAE's point-mass bottleneck)
//   Regularizer<KL | MMD | Beta>          L_reg and its annealing (and Zero, for the DAE)
//   Decoder<GRU | DilatedCNN>             p(x|z) given the decoding signal h = MLP(z)
//
// Each Posterior<F>, Regularizer<R>, Decoder<D> specialisation is a small type with a
// nested `template <class T, class B> struct module` holding its parameters and its
// forward/backward; the primary templates reject unknown families at compile time.
#pragma once
#include <type_traits>

namespace couplevae {

// Posterior families.
struct Gaussian {};
template <int K>
struct Flow {
  static_assert(K >= 1, "couplevae: Flow<K> needs K >= 1 planar flows; for no flow use Posterior<Gaussian>");
  static constexpr int flows = K;
};
struct VMF {};
// A point mass z = W e + b (no noise, no KL): the DAE's bottleneck.
struct Deterministic {};

// Regularisers.
struct KL {};
struct MMD {};
struct Beta {};
// No regulariser (L_reg = 0): the DAE.
struct Zero {};

// Decoders.
struct GRU {};
struct DilatedCNN {};

template <class T>
inline constexpr bool dependent_false_v = false;

template <class Family>
struct Posterior {
  static_assert(dependent_false_v<Family>,
                "couplevae: unknown posterior family; use Posterior<Gaussian>, Posterior<Flow<K>> or Posterior<VMF>");
};
template <class Kind>
struct Regularizer {
  static_assert(dependent_false_v<Kind>,
                "couplevae: unknown regularizer; use Regularizer<KL>, Regularizer<MMD> or Regularizer<Beta>");
};
template <class Kind>
struct Decoder {
  static_assert(dependent_false_v<Kind>,
                "couplevae: unknown decoder; use Decoder<GRU> or Decoder<DilatedCNN>");
};

}  // namespace couplevae
