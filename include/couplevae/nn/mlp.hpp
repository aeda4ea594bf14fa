// couplevae/nn/mlp.hpp: the decoding-signal network h = MLP(z) (reference.md §4).
//
// h = W2 relu(W1 z + b1) + b2; shapes z (B, Z) -> a (B, E) -> h (B, E), with E the embedding
// size (200 in the paper). backward accumulates into W1, b1, W2, b2 and dz.
#pragma once
#include <string>

#include "linear.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct MLP {
  Linear<T, B> l1, l2;
  struct Cache {
    Buffer<T, B> pre, act, dact, dpre;
  };

  MLP() = default;
  MLP(Arena<T, B>& ar, const std::string& name, int in, int hidden, int out)
      : l1(ar, name + ".0", in, hidden), l2(ar, name + ".2", hidden, out) {}

  void forward(Context<B>& ctx, Arena<T, B>& ar, View<T> z, View<T> h, Cache& c) const {
    View<T> pre = c.pre.shape(z.rows, l1.out), act = c.act.shape(z.rows, l1.out);
    l1.forward(ctx, ar, z, pre);
    ops<B>::relu_forward(pre.size(), pre.data, act.data);
    l2.forward(ctx, ar, act, h);
  }
  void backward(Context<B>& ctx, Arena<T, B>& ar, View<T> z, View<T> dh, View<T> dz, Cache& c) const {
    View<T> act{c.act.data(), z.rows, l1.out};
    View<T> dact = c.dact.zeros(z.rows, l1.out);
    l2.backward(ctx, ar, act, dh, dact);
    View<T> dpre = c.dpre.zeros(z.rows, l1.out);
    ops<B>::relu_backward_acc(dpre.size(), act.data, dact.data, dpre.data);
    l1.backward(ctx, ar, z, dpre, dz);
  }
};

}  // namespace couplevae::nn
