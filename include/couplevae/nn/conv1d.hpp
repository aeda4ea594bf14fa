// couplevae/nn/conv1d.hpp: causal dilated 1-D convolution over padded sequences.
//
//   y[b, t, :] = bias + sum_{k<K} W[:, :, k] x[b, t - (K-1-k) d, :],  x = 0 outside [0, steps)
// i.e. PyTorch's Conv1d(in, out, K, dilation=d, padding=(K-1)d) followed by dropping the
// last (K-1)d outputs: the output at t sees t - (K-1)d, ..., t - d, t (reference.md §6; for
// K = 3 the taps t - 2d, t - d, t). K = 1 is the pointwise (1x1) convolution.
// Positions t in [steps, steps + (K-1)d) are the (K-1)d trailing outputs PyTorch computes
// before the drop (they see zero padding); the dilated CNN decoder asks for them because the
// authors' BatchNorm statistics include them.
//
// Shapes: X (batch * steps, in), row b * steps + t (the padded (B, T, C) layout); the
// output window [t0, t1) of every sequence goes to Y (batch * (t1 - t0), out) (dense), row
// b * (t1 - t0) + (t - t0). W (out, in, K) in PyTorch's layout, bias (out); both initialised
// U(+-1/sqrt(in * K)) (PyTorch's default for Conv1d).
// forward requires 0 <= t0 < t1 <= steps + (K-1)d and overwrites Y; it keeps the column
// matrix in the cache. backward (same X, window) accumulates dW, dbias and, when given, dX
// (batch * steps, in).
#pragma once
#include <string>

#include "../backend/conv_ops.hpp"
#include "../core/arena.hpp"
#include "../core/context.hpp"
#include "../core/error.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct Conv1d {
  Param W, b;
  int in = 0, out = 0, K = 1, dilation = 1;
  bool bias = true;

  struct Cache {
    Buffer<T, B> cols, dcols;
    bool direct = false;  // K = 1 over the whole sequence: the GEMM reads X itself
  };

  Conv1d() = default;
  Conv1d(Arena<T, B>& ar, const std::string& name, int in_channels, int out_channels, int kernel, int dil = 1,
         bool with_bias = true)
      : in(in_channels), out(out_channels), K(kernel), dilation(dil), bias(with_bias) {
    require(K >= 1 && dilation >= 1, "conv1d '" + name + "': kernel and dilation must be >= 1");
    W = ar.add(name + ".weight", {out, in, K}, Init::fan_in(in * K));
    if (bias) b = ar.add(name + ".bias", {out}, Init::fan_in(in * K));
  }

  // How far past the input the causal output reaches: (K-1) d.
  int reach() const { return (K - 1) * dilation; }

  // Outputs at positions [t0, t1) of every sequence.
  void forward(Context<B>&, Arena<T, B>& ar, View<T> X, int batch, int steps, int t0, int t1, View<T> Y,
               Cache& c) const {
    check(X, batch, steps, t0, t1);
    const int n = batch * (t1 - t0);
    require(Y.cols == out && Y.rows >= n, "conv1d: Y must be (batch * (t1 - t0), out)");
    c.direct = K == 1 && t0 == 0 && t1 == steps;
    if (c.direct) {
      ops<B>::gemm(false, true, n, out, in, T(1), X.data, X.cols, ar.value(W), in, T(0), Y.data, Y.cols);
    } else {
      View<T> cols = c.cols.shape(n, in * K);
      conv_ops<B>::im2col_causal(batch, steps, in, K, dilation, t0, t1, X.data, X.cols, cols.data);
      ops<B>::gemm(false, true, n, out, in * K, T(1), cols.data, in * K, ar.value(W), in * K, T(0), Y.data, Y.cols);
    }
    if (bias) ops<B>::add_row_bias(Y.data, n, out, ar.value(b));
  }
  // Outputs at positions [0, t1) (t1 = steps for the causal sequence, more for the tail).
  void forward(Context<B>& ctx, Arena<T, B>& ar, View<T> X, int batch, int steps, int t1, View<T> Y,
               Cache& c) const {
    forward(ctx, ar, X, batch, steps, 0, t1, Y, c);
  }

  void backward(Context<B>&, Arena<T, B>& ar, View<T> X, int batch, int steps, int t0, int t1, View<T> dY,
                View<T> dX, Cache& c) const {
    const int n = batch * (t1 - t0);
    require(dY.cols == out && dY.rows >= n, "conv1d: dY must be (batch * (t1 - t0), out)");
    if (bias) ops<B>::col_sum_acc(dY.data, n, out, ar.grad(b));
    if (c.direct) {
      ops<B>::gemm(true, false, out, in, n, T(1), dY.data, dY.cols, X.data, X.cols, T(1), ar.grad(W), in);
      if (dX) ops<B>::gemm(false, false, n, in, out, T(1), dY.data, dY.cols, ar.value(W), in, T(1), dX.data, dX.cols);
      return;
    }
    const int CK = in * K;
    ops<B>::gemm(true, false, out, CK, n, T(1), dY.data, dY.cols, c.cols.data(), CK, T(1), ar.grad(W), CK);
    if (!dX) return;
    View<T> dcols = c.dcols.shape(n, CK);
    ops<B>::gemm(false, false, n, CK, out, T(1), dY.data, dY.cols, ar.value(W), CK, T(0), dcols.data, CK);
    conv_ops<B>::col2im_causal_acc(batch, steps, in, K, dilation, t0, t1, dcols.data, dX.data, dX.cols);
  }
  void backward(Context<B>& ctx, Arena<T, B>& ar, View<T> X, int batch, int steps, int t1, View<T> dY, View<T> dX,
                Cache& c) const {
    backward(ctx, ar, X, batch, steps, 0, t1, dY, dX, c);
  }

 private:
  void check(View<T> X, int batch, int steps, int t0, int t1) const {
    require(batch >= 1 && steps >= 1 && X.rows == batch * steps && X.cols >= in,
            "conv1d: X must be (batch * steps, in)");
    require(t0 >= 0 && t0 < t1 && t1 <= steps + reach(), "conv1d: output window outside [0, steps + (K-1) d)");
  }
};

}  // namespace couplevae::nn
