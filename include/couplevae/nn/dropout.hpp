// couplevae/nn/dropout.hpp: inverted dropout with a mask drawn from the context's generator.
//
// Training: mask_i = [u_i >= p] / (1 - p) (u from the Philox stream), Y = X * mask.
// Evaluation or p = 0: Y = X. The mask is kept in the cache for backward: dX += dY * mask.
// forward = draw (the mask) + apply (Y = X * mask).
// Shapes: any (N, D); X and Y may alias.
#pragma once
#include "../core/arena.hpp"
#include "../core/context.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct Dropout {
  T p = T(0);
  struct Cache {
    Buffer<T, B> mask;
    bool active = false;
  };

  Dropout() = default;
  explicit Dropout(double prob) : p(T(prob)) {}

  void forward(Context<B>& ctx, View<T> X, View<T> Y, Cache& c) const {
    draw(ctx, X.rows, X.cols, c);
    apply(X, Y, c);
  }
  // forward in two parts: draw the mask of an (N, D) input (while training), then apply it,
  // so that a caller can draw a later layer's mask in the stream's order before its input
  // exists (Decoder<GRU>::forward_each).
  void draw(Context<B>& ctx, int rows, int cols, Cache& c) const {
    c.active = ctx.training && p > T(0);
    if (!c.active) return;
    View<T> m = c.mask.shape(rows, cols);
    ops<B>::dropout_mask(ctx.rng, m.size(), p, m.data);
  }
  void apply(View<T> X, View<T> Y, const Cache& c) const {
    if (c.active)
      ops<B>::mul(X.size(), X.data, c.mask.data(), Y.data);
    else if (X.data != Y.data)
      ops<B>::copy(X.data, X.size(), Y.data);
  }
  // In place: d *= mask (d is dY on entry, dX on exit).
  void backward_inplace(View<T> d, const Cache& c) const {
    if (c.active) ops<B>::mul(d.size(), d.data, c.mask.data(), d.data);
  }
  void backward(View<T> dY, View<T> dX, const Cache& c) const {
    if (!c.active)
      ops<B>::axpy(dY.size(), T(1), dY.data, dX.data);
    else
      ops<B>::mul_acc(dY.size(), dY.data, c.mask.data(), dX.data);
  }
};

}  // namespace couplevae::nn
