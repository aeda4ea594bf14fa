// couplevae/backend/conv_ops.hpp: conv_ops<B>, the kernels of the dilated CNN decoder, for every backend.
//
// Layout: a batch of sequences in the padded (B, T, C) layout, stored as a row-major matrix
// (B * T, C) whose row b * T + t holds position t of sequence b (reference.md §6; the
// decoder converts from and to the packed time-major batch itself).
//
// Causal dilated 1-D convolution as im2col + GEMM (the GEMM is ops<B>::gemm):
//   y[b, t, o] = bias[o] + sum_{c, k} W[o, c, k] x[b, t - (K-1-k) d, c],   x[b, s, .] = 0 outside [0, T)
// which is PyTorch's Conv1d(C, O, K, dilation=d, padding=(K-1)d) with the last (K-1)d outputs
// dropped. The column matrix has PyTorch's weight layout (O, C, K) flattened as its inner
// index, so the GEMM is cols (N, C*K) x W^T:
//   cols[b * (t1-t0) + (t - t0), c * K + k] = x[b, t - (K-1-k) d, c]     for t in [t0, t1)
// col2im_causal_acc is its adjoint (accumulates into dX).
//
// Decoder plumbing: the input sequence [h; h], [emb(w); h], ... (cnn_input, and one position
// of it for decoding: cnn_step_input) and residual adds between sequences stored with
// different lengths (add_steps). Token choice is decode_ops<B> (backend/cpu/decode_ops.hpp).
//
// Plain pointer + size signatures over B's memory. Kernels named `_acc` or documented as
// accumulating add (+=); the others overwrite their outputs. Bodies (backend/launch.hpp):
// one index per (column row, tap) for im2col / col2im (col2im accumulates with atomic_add,
// as several taps read one input row: grouped by sequence, as no tap reads another
// sequence), one per element elsewhere; on the host, sequences or indices run on OpenMP
// threads.
#pragma once
#include <cstddef>

#include "../core/hd.hpp"
#include "launch.hpp"
#include "tags.hpp"  // ops<B> (add2d)

namespace couplevae {

namespace conv_kernels {

// Index (row, k) of cols: row = b * w + (t - t0); writes cols[row, c * K + k] for every c.
template <class T>
struct Im2Col {
  int w, steps, C, K, dilation, t0, ldx;
  const T* X;
  T* cols;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t row = i / K;
    const int k = int(i % K), b = int(row / w), t = t0 + int(row % w);
    const int s = t - (K - 1 - k) * dilation;
    T* col = cols + row * size_t(C) * K;
    if (s < 0 || s >= steps) {
      for (int c = 0; c < C; ++c) col[c * K + k] = T(0);
    } else {
      const T* x = X + (size_t(b) * steps + s) * ldx;
      for (int c = 0; c < C; ++c) col[c * K + k] = x[c];
    }
  }
};
// Index (row, k): dX[b * steps + s, c] += dcols[row, c * K + k] for every c (the adjoint).
template <class T>
struct Col2Im {
  int w, steps, C, K, dilation, t0, lddx;
  const T* dcols;
  T* dX;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t row = i / K;
    const int k = int(i % K), b = int(row / w), t = t0 + int(row % w);
    const int s = t - (K - 1 - k) * dilation;
    if (s < 0 || s >= steps) return;
    const T* col = dcols + row * size_t(C) * K;
    T* dx = dX + (size_t(b) * steps + s) * lddx;
    for (int c = 0; c < C; ++c) atomic_add(dx + c, col[c * K + k]);
  }
};
// Element (b, t, j) of X (batch * steps, 2E): [h_b or Em; h_b].
template <class T>
struct CnnInput {
  int steps, E;
  const T *h, *Em;
  T* X;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t j = i % (2 * E), bt = i / (2 * E), b = bt / steps, t = bt % steps;
    if (j >= size_t(E))
      X[i] = h[b * E + j - E];
    else
      X[i] = t == 0 ? h[b * E + j] : Em[(b * (steps - 1) + t - 1) * E + j];
  }
};
// Element (b, t, k) of dEm (batch * (steps-1), E): dEm = dX[b, t + 1, :E] (overwritten).
template <class T>
struct CnnInputBackwardEm {
  int steps, E;
  const T* dX;
  T* dEm;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t k = i % E, bt = i / E, b = bt / (steps - 1), t = bt % (steps - 1) + 1;
    dEm[i] = dX[(b * steps + t) * 2 * E + k];
  }
};
// Element (b, k) of dh: dh_b += dX[b, 0, :E] + sum_t dX[b, t, E:].
template <class T>
struct CnnInputBackwardH {
  int steps, E;
  const T* dX;
  T* dh;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t k = i % E, b = i / E;
    T s = dX[b * steps * 2 * E + k];
    for (int t = 0; t < steps; ++t) s += dX[(b * steps + t) * 2 * E + E + k];
    dh[i] += s;
  }
};
// Element (b, j) of X (batch, 2E): [Em_b (h_b when Em is null); h_b].
template <class T>
struct CnnStepInput {
  int E;
  const T *h, *Em;
  T* X;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t j = i % (2 * E), b = i / (2 * E);
    X[i] = j >= size_t(E) ? h[b * E + j - E] : (Em ? Em : h)[b * E + j];
  }
};

}  // namespace conv_kernels

template <class B>
struct conv_ops {
  // cols (batch * (t1 - t0), C * K), overwritten, from X (batch * steps, C) with row stride
  // ldx: the causal taps of positions [t0, t1) of every sequence (zeros outside [0, steps)).
  template <class T>
  static void im2col_causal(int batch, int steps, int C, int K, int dilation, int t0, int t1, const T* X,
                            int ldx, T* cols) {
    const int w = t1 - t0;
    launch<B>::for_each_parallel(size_t(batch) * w * K, size_t(C),
                                 conv_kernels::Im2Col<T>{w, steps, C, K, dilation, t0, ldx, X, cols});
  }
  // Adjoint of im2col_causal: dX[b * steps + s, c] += dcols[...] for every tap that read it.
  template <class T>
  static void col2im_causal_acc(int batch, int steps, int C, int K, int dilation, int t0, int t1, const T* dcols,
                                T* dX, int lddx) {
    const int w = t1 - t0;
    launch<B>::for_each_grouped(size_t(batch), size_t(w) * K, size_t(C),
                                conv_kernels::Col2Im<T>{w, steps, C, K, dilation, t0, lddx, dcols, dX});
  }

  // dst[b * dst_steps + t, :C] += src[b * src_steps + t, :C] for t < steps (a residual add
  // between sequences stored with different lengths; also its own adjoint with the roles
  // of src and dst swapped).
  template <class T>
  static void add_steps(int batch, int steps, int C, const T* src, int src_steps, T* dst, int dst_steps) {
    // Sequence b's first `steps` rows are contiguous in both: one 2-D accumulate.
    ops<B>::add2d(src, batch, steps * C, src_steps * C, dst, dst_steps * C);
  }

  // The decoder's input sequence X (batch * steps, 2E), overwritten (reference.md §4, §6):
  //   X[b, 0] = [h_b; h_b],   X[b, t] = [Em[b * (steps-1) + t-1]; h_b]  (t >= 1)
  // with h (batch, E) and Em (batch * (steps-1), E) the (dropped-out) word embeddings.
  template <class T>
  static void cnn_input(int batch, int steps, int E, const T* h, const T* Em, T* X) {
    launch<B>::for_each(size_t(batch) * steps * 2 * E, conv_kernels::CnnInput<T>{steps, E, h, Em, X});
  }
  // Adjoint of cnn_input: dEm (batch * (steps-1), E) is overwritten; dh (batch, E) accumulates
  //   dh_b += dX[b, 0, :E] + sum_t dX[b, t, E:].
  template <class T>
  static void cnn_input_backward(int batch, int steps, int E, const T* dX, T* dEm, T* dh) {
    if (steps > 1)
      launch<B>::for_each(size_t(batch) * (steps - 1) * E, conv_kernels::CnnInputBackwardEm<T>{steps, E, dX, dEm});
    launch<B>::for_each(size_t(batch) * E, conv_kernels::CnnInputBackwardH<T>{steps, E, dX, dh});
  }
  // One decoding position: X (batch, 2E) = [Em_b; h_b], or [h_b; h_b] when Em is null.
  template <class T>
  static void cnn_step_input(int batch, int E, const T* h, const T* Em, T* X) {
    launch<B>::for_each(size_t(batch) * 2 * E, conv_kernels::CnnStepInput<T>{E, h, Em, X});
  }
};

}  // namespace couplevae
