// couplevae/backend/cpu/ops.hpp: ops<cpu>, the CPU kernels every module calls.
//
// Plain pointer + size signatures (the same ones ops<cuda> implements), row-major data.
// GEMM goes through Eigen (multi-threaded when built with OpenMP); element-wise kernels
// are simple loops the compiler vectorises, Eigen arrays (SIMD tanh, logistic, exp), or the
// row bodies of backend/kernels.hpp that ops<cuda> launches too (posterior, coupling;
// BatchNorm walks rows here, forming the sums its column body forms). Kernels that produce
// gradients follow the accumulate rule where their name says `_acc`; others overwrite their
// outputs.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../core/eigen.hpp"

#include "../../core/rng.hpp"
#include "small_gemm.hpp"
#include "../kernels.hpp"
#include "../launch.hpp"
#include "../tags.hpp"

namespace couplevae {

namespace detail {
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
}  // namespace detail

template <>
struct ops<cpu> {
  // C (M x N) = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; leading dimensions
  // are row strides. beta is 0 (overwrite) or 1 (accumulate) or any other scale.
  template <class T>
  static void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda,
                   const T* Bp, int ldb, T beta, T* C, int ldc) {
    using namespace detail;
    if (M == 0 || N == 0) return;
    MMap<T> Cm(C, M, N, Eigen::OuterStride<>(ldc));
    if (K == 0) {
      if (beta == T(0)) Cm.setZero(); else Cm *= beta;
      return;
    }
    CMap<T> Am(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
    CMap<T> Bm(Bp, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
    auto run = [&](const auto& a, const auto& b) {
      if (beta == T(0)) {
        Cm.noalias() = alpha * (a * b);
      } else {
        if (beta != T(1)) Cm *= beta;
        Cm.noalias() += alpha * (a * b);
      }
    };
    if (!ta && !tb) run(Am, Bm);
    else if (ta && !tb) run(Am.transpose(), Bm);
    else if (!ta && tb) run(Am, Bm.transpose());
    else run(Am.transpose(), Bm.transpose());
  }

  // C (M x N) = A (M x K) Bt (K x N) (+ C when accumulate) for few rows (the recurrences):
  // the weights are read in place, never repacked (backend/cpu/small_gemm.hpp); many rows
  // go through gemm.
  template <class T>
  static void gemm_few_rows(int M, int N, int K, const T* A, int lda, const T* Bt, int ldb, T* C, int ldc,
                            bool accumulate) {
    if (M <= few_rows)
      detail::small_gemm(M, N, K, A, lda, Bt, ldb, C, ldc, accumulate);
    else
      gemm(false, false, M, N, K, T(1), A, lda, Bt, ldb, accumulate ? T(1) : T(0), C, ldc);
  }
  static constexpr int few_rows = 64;
  // y (cols x rows) = x^T for x (rows x cols), both contiguous.
  template <class T>
  static void transpose(const T* x, int rows, int cols, T* y) {
    detail::MMap<T>(y, cols, rows, Eigen::OuterStride<>(rows)) =
        detail::CMap<T>(x, rows, cols, Eigen::OuterStride<>(cols)).transpose();
  }

  // Packed GEMM shorthand: every matrix contiguous.
  template <class T>
  static void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, const T* Bp,
                   T beta, T* C) {
    gemm(ta, tb, M, N, K, alpha, A, ta ? M : K, Bp, tb ? K : N, beta, C, N);
  }

  template <class T>
  static void copy(const T* x, size_t n, T* y) {
    if (n) std::memcpy(y, x, n * sizeof(T));
  }
  // 2-D strided copy: dst[r, :cols] = src[r, :cols] (row strides ld_src, ld_dst).
  template <class T>
  static void copy2d(const T* src, int rows, int cols, int ld_src, T* dst, int ld_dst) {
    for (int r = 0; r < rows; ++r)
      std::memcpy(dst + size_t(r) * ld_dst, src + size_t(r) * ld_src, cols * sizeof(T));
  }
  // 2-D strided accumulate: dst[r, :cols] += src[r, :cols].
  template <class T>
  static void add2d(const T* src, int rows, int cols, int ld_src, T* dst, int ld_dst) {
    for (int r = 0; r < rows; ++r) {
      const T* s = src + size_t(r) * ld_src;
      T* d = dst + size_t(r) * ld_dst;
      for (int c = 0; c < cols; ++c) d[c] += s[c];
    }
  }
  template <class T>
  static void fill(T* y, size_t n, T v) {
    std::fill(y, y + n, v);
  }
  // y += alpha * x
  template <class T>
  static void axpy(size_t n, T alpha, const T* x, T* y) {
    for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }

  // Y[r, :] += b for r < rows.
  template <class T>
  static void add_row_bias(T* Y, int rows, int cols, const T* b) {
    for (int r = 0; r < rows; ++r) {
      T* y = Y + size_t(r) * cols;
      for (int c = 0; c < cols; ++c) y[c] += b[c];
    }
  }
  // db += sum over rows of dY.
  template <class T>
  static void col_sum_acc(const T* dY, int rows, int cols, T* db) {
    for (int r = 0; r < rows; ++r) {
      const T* d = dY + size_t(r) * cols;
      for (int c = 0; c < cols; ++c) db[c] += d[c];
    }
  }

  // out[i, :] = table[ids[i], :]
  template <class T>
  static void gather_rows(const T* table, int dim, const int32_t* ids, int n, T* out, int ld_out) {
    for (int i = 0; i < n; ++i) std::memcpy(out + size_t(i) * ld_out, table + size_t(ids[i]) * dim, dim * sizeof(T));
  }
  // dtable[ids[i], :] += dout[i, :]
  template <class T>
  static void scatter_add_rows(const T* dout, int ld_dout, const int32_t* ids, int n, int dim, T* dtable) {
    for (int i = 0; i < n; ++i) {
      T* d = dtable + size_t(ids[i]) * dim;
      const T* s = dout + size_t(i) * ld_dout;
      for (int c = 0; c < dim; ++c) d[c] += s[c];
    }
  }

  // n standard normal / uniform (0, 1) values from the generator (core/rng.hpp), which
  // advances by ceil(n / 4) blocks. Every backend draws the same numbers for the same
  // (seed, position).
  template <class T>
  static void normal(Rng& rng, T* out, size_t n) {
    rng.normal(out, n);
  }
  template <class T>
  static void uniform(Rng& rng, T* out, size_t n) {
    rng.uniform(out, n);
  }
  // (rows, cols) standard normals, row r from its own stream (core/rng.hpp RowNoise).
  template <class T>
  static void normal_rows(const RowNoise& noise, int rows, int cols, T* out) {
    launch<cpu>::for_each(size_t(rows) * size_t(cols), kernels::NormalRows<T>{noise.key, noise.ids, cols, out});
  }

  // Inverted dropout: mask[i] = (u_i >= p) / (1 - p) from the generator; y = x * mask.
  template <class T>
  static void dropout_mask(Rng& rng, size_t n, T p, T* mask) {
    rng.uniform(mask, n);
    const T keep = T(1) / (T(1) - p);
    for (size_t i = 0; i < n; ++i) mask[i] = mask[i] >= p ? keep : T(0);
  }
  template <class T>
  static void mul(size_t n, const T* a, const T* b, T* y) {
    for (size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
  }
  // y += a * b
  template <class T>
  static void mul_acc(size_t n, const T* a, const T* b, T* y) {
    for (size_t i = 0; i < n; ++i) y[i] += a[i] * b[i];
  }

  // y = tanh(x) (Eigen's SIMD tanh; y may be x).
  template <class T>
  static void tanh_forward(size_t n, const T* x, T* y) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<Arr>(y, Eigen::Index(n)) = Eigen::Map<const Arr>(x, Eigen::Index(n)).tanh();
  }
  // dx += dy * (1 - y^2)
  template <class T>
  static void tanh_backward_acc(size_t n, const T* y, const T* dy, T* dx) {
    for (size_t i = 0; i < n; ++i) dx[i] += dy[i] * (T(1) - y[i] * y[i]);
  }
  template <class T>
  static void relu_forward(size_t n, const T* x, T* y) {
    for (size_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
  }
  // dx += dy * [y > 0]
  template <class T>
  static void relu_backward_acc(size_t n, const T* y, const T* dy, T* dx) {
    for (size_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? dy[i] : T(0);
  }

  // GRU gates for `a` rows (PyTorch's gate order r, z, n), with g = gh + bh:
  //   r = s(gx_r + g_r), z = s(gx_z + g_z), n = tanh(gx_n + r * g_n),
  //   h' = (1 - z) * n + z * h.
  // gx: (a, 3H) with b_ih included; gh: (a, 3H) = h W_hh^T without its bias bh (3H), which
  // is added here (one pass less than a separate bias kernel); h, h_new: (a, H). Saves r, z,
  // n and g_n (ghn). Rows with keep[i] == 0 (keep given: the padding of a bucketed batch)
  // carry h (kernels::gru_carry: h' = h, r = n = ghn = 0, z = 1).
  template <class T>
  static void gru_gates_forward(int a, int H, const T* gx, const T* gh, const T* bh, const T* h, T* r, T* z,
                                T* n, T* ghn, T* h_new, const int32_t* keep = nullptr) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using C = Eigen::Map<const Arr>;
    using M = Eigen::Map<Arr>;
    for (int i = 0; i < a; ++i) {  // one row at a time, SIMD over H (Eigen's logistic and tanh)
      const T* x = gx + size_t(i) * 3 * H;
      const T* g = gh + size_t(i) * 3 * H;
      const size_t o = size_t(i) * H;
      if (keep && !keep[i]) {
        for (size_t k = o; k < o + size_t(H); ++k) kernels::store(kernels::gru_carry(h[k]), k, r, z, n, ghn, h_new);
        continue;
      }
      M R(r + o, H), Z(z + o, H), N(n + o, H), G(ghn + o, H);
      R = (C(x, H) + C(g, H) + C(bh, H)).logistic();
      Z = (C(x + H, H) + C(g + H, H) + C(bh + H, H)).logistic();
      G = C(g + 2 * H, H) + C(bh + 2 * H, H);
      N = (C(x + 2 * H, H) + R * G).tanh();
      M(h_new + o, H) = (T(1) - Z) * N + Z * C(h + o, H);
    }
  }
  // Backward of gru_gates_forward. dh (a, H): in dL/dh' (plus ds, the gradient on the states
  // from outside the recurrence, rows with stride ld_ds, when given), out dL/dh through the
  // z path only (the caller adds dgh * W_hh). dgx, dgh (a, 3H) are overwritten.
  template <class T>
  static void gru_gates_backward(int a, int H, const T* r, const T* z, const T* n, const T* ghn,
                                 const T* h, const T* ds, int ld_ds, T* dh, T* dgx, T* dgh) {
    for (int i = 0; i < a; ++i) {
      const size_t o = size_t(i) * H;
      T* dx = dgx + size_t(i) * 3 * H;
      T* dg = dgh + size_t(i) * 3 * H;
      const T* dsi = ds ? ds + size_t(i) * ld_ds : nullptr;
      for (int k = 0; k < H; ++k) {
        const T d = dh[o + k] + (dsi ? dsi[k] : T(0)), rk = r[o + k], zk = z[o + k], nk = n[o + k];
        const T dan = d * (T(1) - zk) * (T(1) - nk * nk);
        const T daz = d * (h[o + k] - nk) * zk * (T(1) - zk);
        const T dar = dan * ghn[o + k] * rk * (T(1) - rk);
        dx[k] = dar;
        dx[H + k] = daz;
        dx[2 * H + k] = dan;
        dg[k] = dar;
        dg[H + k] = daz;
        dg[2 * H + k] = dan * rk;
        dh[o + k] = d * zk;
      }
    }
  }

  // The softmax's kernels use the OpenMP threads above this many values (below, a fork and
  // join costs more than it saves); its backward walks columns in blocks of this width.
  static constexpr size_t softmax_parallel_values = 200000;
  static constexpr int softmax_column_block = 512;

  // Softmax cross-entropy over rows of logits (rows, V): loss[i] = -log softmax(x_i)[t_i],
  // with x_i = logits_i + bias when a bias (V) is given (added as each row is read: one pass
  // over the logits less than a separate add_row_bias).
  // With keep_probs the logits are overwritten by softmax(x_i) for the backward pass;
  // without, only the losses are produced and the logits are left as scratch (here
  // exp(x - max); ops<cuda> leaves them as they were).
  // A row whose target is negative (the padding of a bucketed batch) has loss 0 and, in
  // softmax_xent_backward, zero gradient. Vectorised through Eigen arrays (SIMD exp).
  template <class T>
  static void softmax_xent(T* logits, int rows, int V, const int32_t* targets, T* loss, bool keep_probs = true,
                           const T* bias = nullptr) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    COUPLEVAE_OMP(parallel for schedule(static) if (size_t(rows) * V > softmax_parallel_values))
    for (int i = 0; i < rows; ++i) {
      Eigen::Map<Arr> x(logits + size_t(i) * V, V);
      if (bias) x += Eigen::Map<const Arr>(bias, V);
      const T m = x.maxCoeff();
      const bool has_target = targets[i] >= 0;
      const T xt = has_target ? x[targets[i]] : T(0);
      x = (x - m).exp();
      const T s = x.sum();
      loss[i] = has_target ? std::log(s) + m - xt : T(0);
      if (keep_probs) x *= T(1) / s;
    }
  }
  // Backward of softmax_xent: probs (rows, V) become d logits = dloss[i] * (p_i - onehot(t_i)),
  // and, when dbias is given, dbias += their column sums (the bias's gradient, formed while
  // each value is at hand rather than in a col_sum_acc pass of its own). The threads take
  // column blocks and each column adds its rows in order, as col_sum_acc does, so the sums
  // do not depend on the thread count.
  template <class T>
  static void softmax_xent_backward(T* probs, int rows, int V, const int32_t* targets, const T* dloss,
                                    T* dbias = nullptr) {
    constexpr int block = softmax_column_block;
    const int blocks = (V + block - 1) / block;
    COUPLEVAE_OMP(parallel for schedule(static) if (size_t(rows) * V > softmax_parallel_values))
    for (int j = 0; j < blocks; ++j) {
      const int c0 = j * block, c1 = std::min(V, c0 + block);
      for (int i = 0; i < rows; ++i) {
        T* x = probs + size_t(i) * V;
        const int t = targets[i];
        if (t < 0) {
          std::fill(x + c0, x + c1, T(0));
          continue;
        }
        const T d = dloss[i];
        for (int c = c0; c < c1; ++c) x[c] *= d;
        if (t >= c0 && t < c1) x[t] -= d;
        if (dbias)
          for (int c = c0; c < c1; ++c) dbias[c] += x[c];
      }
    }
  }
  // out[seg[i]] += x[i] for i < n (out is not cleared).
  template <class T, class U>
  static void segment_sum(const T* x, const int32_t* seg, int n, U* out) {
    for (int i = 0; i < n; ++i) out[seg[i]] += U(x[i]);
  }
  // y[i] = x[seg[i]]
  template <class T>
  static void segment_broadcast(const T* x, const int32_t* seg, int n, T* y) {
    for (int i = 0; i < n; ++i) y[i] = x[seg[i]];
  }

  // Gaussian posterior N(mu, exp(ls)^2) on (rows, Z):
  //   z = mu + exp(ls) * eps, kl[i] = 0.5 sum_k (mu^2 + exp(2 ls) - 1 - 2 ls),
  //   logq[i] = sum_k (-eps^2/2 - ls - log(2 pi)/2), logp[i] = sum_k (-z^2/2 - log(2 pi)/2).
  template <class T>
  static void gaussian_sample(int rows, int Z, const T* mu, const T* ls, const T* eps, T* z, T* kl,
                              T* logq, T* logp) {
    launch<cpu>::for_each(size_t(rows), kernels::GaussianSample<T>{Z, mu, ls, eps, z, kl, logq, logp});
  }
  // dmu += dz + dkl_i * mu; dls += dz * exp(ls) * eps + dkl_i * (exp(2 ls) - 1).
  template <class T>
  static void gaussian_sample_backward(int rows, int Z, const T* mu, const T* ls, const T* eps,
                                       const T* dz, const T* dkl, T* dmu, T* dls) {
    launch<cpu>::for_each(size_t(rows) * Z, kernels::GaussianSampleBackward<T>{Z, mu, ls, eps, dz, dkl, dmu, dls});
  }

  // Coupling loss per row between decoding signals h and (detached) hc, both (rows, D):
  //   d_i = ||h_i - hc_i||^2; rq: loss_i = -sum_s C_s / (C_s + d_i); euclidean: loss_i = d_i.
  template <class T>
  static void coupling_forward(int rows, int D, const T* h, const T* hc, const double* scales,
                               int n_scales, bool rq, T* loss) {
    launch<cpu>::for_each(size_t(rows),
                          kernels::CouplingForward<T>{D, h, hc, kernels::scales_of(scales, n_scales), rq, loss});
  }
  // dh += dloss_i * dloss_i/dd * 2 (h - hc)
  template <class T>
  static void coupling_backward(int rows, int D, const T* h, const T* hc, const double* scales,
                                int n_scales, bool rq, const T* dloss, T* dh) {
    launch<cpu>::for_each(size_t(rows), kernels::CouplingBackward<T>{D, h, hc, kernels::scales_of(scales, n_scales),
                                                                     rq, dloss, dh});
  }

  // BatchNorm over the rows of X (N, C). Training: per-column batch mean and biased
  // variance, running stats updated with momentum (unbiased variance, PyTorch's rule);
  // evaluation: running stats. Y = gamma * xhat + beta; saves xhat and 1/sqrt(var + eps).
  // X and Y may alias.
  // The host walks the rows (contiguous, so the loops vectorise) for a block of columns at a
  // time, blocks shared among OpenMP threads, each column's sums in double in row order
  // (ops<cuda>: backend/cuda/batch_norm.cuh, the same sums in another order, so the
  // backends agree to rounding).
  template <class T>
  static void batchnorm_forward(int N, int C, const T* X, const T* gamma, const T* beta, T* run_mean, T* run_var,
                                bool training, double momentum, double eps, T* xhat, T* inv_std, T* Y) {
    for_column_blocks(N, C, [&](int c0, int w) {
      double mean[bn_block], var[bn_block];
      if (training) {
        double s[bn_block] = {}, ss[bn_block] = {};
        for (int i = 0; i < N; ++i) {
          const T* x = X + size_t(i) * C + c0;
          for (int j = 0; j < w; ++j) s[j] += double(x[j]);
        }
        for (int j = 0; j < w; ++j) mean[j] = s[j] / N;
        for (int i = 0; i < N; ++i) {
          const T* x = X + size_t(i) * C + c0;
          for (int j = 0; j < w; ++j) {
            const double d = double(x[j]) - mean[j];
            ss[j] += d * d;
          }
        }
        for (int j = 0; j < w; ++j) {
          const int c = c0 + j;
          var[j] = ss[j] / N;
          run_mean[c] = T((1 - momentum) * double(run_mean[c]) + momentum * mean[j]);
          const double unbiased = N > 1 ? ss[j] / (N - 1) : var[j];
          run_var[c] = T((1 - momentum) * double(run_var[c]) + momentum * unbiased);
        }
      } else {
        for (int j = 0; j < w; ++j) {
          mean[j] = double(run_mean[c0 + j]);
          var[j] = double(run_var[c0 + j]);
        }
      }
      T mu[bn_block], is[bn_block];
      for (int j = 0; j < w; ++j) {
        mu[j] = T(mean[j]);
        is[j] = inv_std[c0 + j] = T(1.0 / std::sqrt(var[j] + eps));
      }
      for (int i = 0; i < N; ++i) {
        const size_t o = size_t(i) * C + c0;
        for (int j = 0; j < w; ++j) {
          xhat[o + j] = (X[o + j] - mu[j]) * is[j];
          Y[o + j] = gamma[c0 + j] * xhat[o + j] + beta[c0 + j];
        }
      }
    });
  }
  // Accumulates dgamma, dbeta and dX (training: through the batch statistics), walking rows
  // as above.
  template <class T>
  static void batchnorm_backward(int N, int C, const T* xhat, const T* inv_std, const T* gamma, const T* dY,
                                 bool training, T* dgamma, T* dbeta, T* dX) {
    for_column_blocks(N, C, [&](int c0, int w) {
      double sd[bn_block] = {}, sdx[bn_block] = {};
      for (int i = 0; i < N; ++i) {
        const size_t o = size_t(i) * C + c0;
        for (int j = 0; j < w; ++j) {
          sd[j] += double(dY[o + j]);
          sdx[j] += double(dY[o + j]) * double(xhat[o + j]);
        }
      }
      T k[bn_block], md[bn_block], mdx[bn_block];
      for (int j = 0; j < w; ++j) {
        dgamma[c0 + j] += T(sdx[j]);
        dbeta[c0 + j] += T(sd[j]);
        k[j] = gamma[c0 + j] * inv_std[c0 + j];
        md[j] = T(sd[j] / N);
        mdx[j] = T(sdx[j] / N);
      }
      if (!dX) return;
      for (int i = 0; i < N; ++i) {
        const size_t o = size_t(i) * C + c0;
        if (training)
          for (int j = 0; j < w; ++j) dX[o + j] += k[j] * (dY[o + j] - md[j] - xhat[o + j] * mdx[j]);
        else
          for (int j = 0; j < w; ++j) dX[o + j] += k[j] * dY[o + j];
      }
    });
  }

  template <class T>
  static double sum(const T* x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(x[i]);
    return s;
  }
  template <class T>
  static void add_scalar(T* y, size_t n, T v) {
    for (size_t i = 0; i < n; ++i) y[i] += v;
  }
  template <class T>
  static double sum_squares(const T* x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
  }
  // out[0] += scale * sum(x), out[0] += scale * sum_squares(x): out in the backend's memory.
  template <class T>
  static void sum_into(const T* x, size_t n, double scale, double* out) {
    *out += scale * sum(x, n);
  }
  template <class T>
  static void sum_squares_into(const T* x, size_t n, double scale, double* out) {
    *out += scale * sum_squares(x, n);
  }
  template <class T>
  static void scale(T* x, size_t n, T s) {
    for (size_t i = 0; i < n; ++i) x[i] *= s;
  }
  template <class T>
  static bool all_finite(const T* x, size_t n) {
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) return false;
    return true;
  }

  // One Adam step over a whole arena (values, grads, moments m and v of n elements) with the
  // numbers of `clock` (backend/kernels.hpp AdamTick), skipped when clock->apply is 0:
  //   g' = grad_scale * g, m = b1 m + (1-b1) g', v = b2 v + (1-b2) g'^2,
  //   x -= lr * mhat / (sqrt(vhat) + eps)   (step = lr / c1, inv_sqrt_c2 = 1 / sqrt(c2))
  template <class T>
  static void adam(size_t n, T* x, const T* g, T* m, T* v, const kernels::AdamClock* clock, double b1, double b2,
                   double eps) {
    if (!clock->apply) return;
    const T tb1 = T(b1), tb2 = T(b2);
    const T step = T(clock->step);
    const T inv_sqrt_c2 = T(clock->inv_sqrt_c2);
    const T teps = T(eps);
    const T gs = T(clock->grad_scale);
    COUPLEVAE_OMP(parallel for simd schedule(static) if (n > 100000))
    for (size_t i = 0; i < n; ++i) {
      const T gi = g[i] * gs;
      m[i] = tb1 * m[i] + (T(1) - tb1) * gi;
      v[i] = tb2 * v[i] + (T(1) - tb2) * gi * gi;
      x[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + teps);
    }
  }

  // BatchNorm's column blocks: f(c0, w) for the columns [c0, c0 + w), w <= bn_block.
  static constexpr int bn_block = 64;
  template <class F>
  static void for_column_blocks(int N, int C, const F& f) {
    const int blocks = (C + bn_block - 1) / bn_block;
    launch<cpu>::for_each_parallel(size_t(blocks), size_t(N) * bn_block * 4, [&](size_t k) {
      const int c0 = int(k) * bn_block;
      f(c0, std::min(bn_block, C - c0));
    });
  }
};

}  // namespace couplevae
