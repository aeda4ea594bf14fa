// couplevae/backend/cpu/conv_ops.hpp: conv_ops<cpu>, the kernels of the dilated CNN decoder.
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
// Plain pointer + size signatures, the ones a conv_ops<cuda> will implement. Kernels named
// `_acc` or documented as accumulating add (+=); the others overwrite their outputs.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../tags.hpp"

namespace couplevae {

// The primary template is never used: the backend's conv_ops header provides the
// specialisation (this one for cpu).
template <class B>
struct conv_ops {
  static_assert(is_backend_v<B>, "couplevae: conv_ops<B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: conv_ops<cuda> is not visible: include the cuda backend's conv_ops header and "
                "compile this translation unit with nvcc (COUPLEVAE_WITH_CUDA=ON)");
};

template <>
struct conv_ops<cpu> {
  // cols (batch * (t1 - t0), C * K), overwritten, from X (batch * steps, C) with row stride
  // ldx: the causal taps of positions [t0, t1) of every sequence (zeros outside [0, steps)).
  template <class T>
  static void im2col_causal(int batch, int steps, int C, int K, int dilation, int t0, int t1, const T* X,
                            int ldx, T* cols) {
    const int w = t1 - t0, CK = C * K;
    for (int b = 0; b < batch; ++b)
      for (int t = t0; t < t1; ++t) {
        T* col = cols + (size_t(b) * w + (t - t0)) * CK;
        for (int k = 0; k < K; ++k) {
          const int s = t - (K - 1 - k) * dilation;
          if (s < 0 || s >= steps) {
            for (int c = 0; c < C; ++c) col[c * K + k] = T(0);
          } else {
            const T* x = X + (size_t(b) * steps + s) * ldx;
            for (int c = 0; c < C; ++c) col[c * K + k] = x[c];
          }
        }
      }
  }
  // Adjoint of im2col_causal: dX[b * steps + s, c] += dcols[...] for every tap that read it.
  template <class T>
  static void col2im_causal_acc(int batch, int steps, int C, int K, int dilation, int t0, int t1, const T* dcols,
                                T* dX, int lddx) {
    const int w = t1 - t0, CK = C * K;
    for (int b = 0; b < batch; ++b)
      for (int t = t0; t < t1; ++t) {
        const T* col = dcols + (size_t(b) * w + (t - t0)) * CK;
        for (int k = 0; k < K; ++k) {
          const int s = t - (K - 1 - k) * dilation;
          if (s < 0 || s >= steps) continue;
          T* dx = dX + (size_t(b) * steps + s) * lddx;
          for (int c = 0; c < C; ++c) dx[c] += col[c * K + k];
        }
      }
  }

  // dst[b * dst_steps + t, :C] += src[b * src_steps + t, :C] for t < steps (a residual add
  // between sequences stored with different lengths; also its own adjoint with the roles
  // of src and dst swapped).
  template <class T>
  static void add_steps(int batch, int steps, int C, const T* src, int src_steps, T* dst, int dst_steps) {
    for (int b = 0; b < batch; ++b)
      for (int t = 0; t < steps; ++t) {
        const T* s = src + (size_t(b) * src_steps + t) * C;
        T* d = dst + (size_t(b) * dst_steps + t) * C;
        for (int c = 0; c < C; ++c) d[c] += s[c];
      }
  }

  // The decoder's input sequence X (batch * steps, 2E), overwritten (reference.md §4, §6):
  //   X[b, 0] = [h_b; h_b],   X[b, t] = [Em[b * (steps-1) + t-1]; h_b]  (t >= 1)
  // with h (batch, E) and Em (batch * (steps-1), E) the (dropped-out) word embeddings.
  template <class T>
  static void cnn_input(int batch, int steps, int E, const T* h, const T* Em, T* X) {
    for (int b = 0; b < batch; ++b) {
      const T* hb = h + size_t(b) * E;
      for (int t = 0; t < steps; ++t) {
        T* x = X + (size_t(b) * steps + t) * 2 * E;
        const T* left = t == 0 ? hb : Em + (size_t(b) * (steps - 1) + t - 1) * E;
        std::memcpy(x, left, E * sizeof(T));
        std::memcpy(x + E, hb, E * sizeof(T));
      }
    }
  }
  // Adjoint of cnn_input: dEm (batch * (steps-1), E) is overwritten; dh (batch, E) accumulates
  //   dh_b += dX[b, 0, :E] + sum_t dX[b, t, E:].
  template <class T>
  static void cnn_input_backward(int batch, int steps, int E, const T* dX, T* dEm, T* dh) {
    for (int b = 0; b < batch; ++b) {
      T* dhb = dh + size_t(b) * E;
      for (int t = 0; t < steps; ++t) {
        const T* d = dX + (size_t(b) * steps + t) * 2 * E;
        if (t == 0)
          for (int k = 0; k < E; ++k) dhb[k] += d[k];
        else
          std::memcpy(dEm + (size_t(b) * (steps - 1) + t - 1) * E, d, E * sizeof(T));
        for (int k = 0; k < E; ++k) dhb[k] += d[E + k];
      }
    }
  }
  // One decoding position: X (batch, 2E) = [Em_b; h_b], or [h_b; h_b] when Em is null.
  template <class T>
  static void cnn_step_input(int batch, int E, const T* h, const T* Em, T* X) {
    for (int b = 0; b < batch; ++b) {
      T* x = X + size_t(b) * 2 * E;
      std::memcpy(x, (Em ? Em : h) + size_t(b) * E, E * sizeof(T));
      std::memcpy(x + E, h + size_t(b) * E, E * sizeof(T));
    }
  }
};

}  // namespace couplevae
