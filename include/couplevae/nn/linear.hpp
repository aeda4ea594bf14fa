// couplevae/nn/linear.hpp: affine map Y = X W^T + b.
//
// Shapes: X (N, in), W (out, in), b (out), Y (N, out). PyTorch's layout and default
// initialisation U(+-1/sqrt(in)) for W and b (reference.md §2).
// forward overwrites Y. backward accumulates dW += dY^T X, db += sum_rows dY and, when dX is
// given, dX += dY W. product and product_backward are the same without b, for a caller that
// adds b and sums db in passes of its own (nn::VocabLoss: in its softmax and its backward).
#pragma once
#include <string>

#include "../core/arena.hpp"
#include "../core/context.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct Linear {
  Param W, b;
  int in = 0, out = 0;
  bool bias = true;

  Linear() = default;
  Linear(Arena<T, B>& ar, const std::string& name, int in_features, int out_features, bool with_bias = true)
      : in(in_features), out(out_features), bias(with_bias) {
    W = ar.add(name + ".weight", {out, in}, Init::fan_in(in));
    if (bias) b = ar.add(name + ".bias", {out}, Init::fan_in(in));
  }

  void forward(Context<B>&, Arena<T, B>& ar, View<T> X, View<T> Y) const {
    product(ar, X, Y);
    if (bias) ops<B>::add_row_bias(Y.data, X.rows, out, ar.value(b));
  }
  // Y = X W^T alone, for a caller that adds bias_values() itself (VocabLoss, in its softmax).
  void product(Arena<T, B>& ar, View<T> X, View<T> Y) const {
    ops<B>::gemm(false, true, X.rows, out, in, T(1), X.data, in, ar.value(W), in, T(0), Y.data, Y.cols);
  }
  const T* bias_values(Arena<T, B>& ar) const { return bias ? ar.value(b) : nullptr; }

  void backward(Context<B>&, Arena<T, B>& ar, View<T> X, View<T> dY, View<T> dX) const {
    if (bias) ops<B>::col_sum_acc(dY.data, dY.rows, out, ar.grad(b));
    product_backward(ar, X, dY, dX);
  }
  // dW and dX alone, for a caller that accumulates bias_grad() itself.
  void product_backward(Arena<T, B>& ar, View<T> X, View<T> dY, View<T> dX) const {
    ops<B>::gemm(true, false, out, in, X.rows, T(1), dY.data, dY.cols, X.data, X.cols, T(1), ar.grad(W), in);
    if (dX) ops<B>::gemm(false, false, dY.rows, in, out, T(1), dY.data, dY.cols, ar.value(W), in, T(1), dX.data, dX.cols);
  }
  T* bias_grad(Arena<T, B>& ar) const { return bias ? ar.grad(b) : nullptr; }
};

}  // namespace couplevae::nn
