// couplevae/backend/cuda/ops.cuh: ops<cuda>, the kernels every module calls, on an NVIDIA GPU.
//
// The same signatures as ops<cpu> (backend/cpu/ops.hpp), with every pointer in device
// memory (Buffer<T, cuda>) except `scales` of the coupling loss, which is read on the host.
// Everything is queued on the calling thread's stream (runtime.cuh); only the reductions
// that return a number to the host (sum, sum_squares, all_finite) wait for it; their
// `_into` forms accumulate into device memory instead and do not.
//   GEMMs                : cuBLAS (row-major operands passed as their column-major transposes)
//   element-wise / rows  : grid-stride kernels over the bodies of backend/kernels.hpp, or
//                          __device__ lambdas for the one-liners (nvcc --extended-lambda)
//   softmax-cross-entropy: one block per row (max, sum of exp, loss, probabilities), the row
//                          cached in shared memory up to 12K floats (one read, one write)
//   scatter / segment sums: atomicAdd
//   BatchNorm            : a block per 8 columns, the rows' sums in shared memory (batch_norm.cuh)
// Noise: the kernels evaluate the counter-based generator of core/rng.hpp at (seed,
// position, element), so a seed gives the same draws as on cpu; the host Rng advances
// its position exactly as Rng::uniform / Rng::normal do.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../../core/rng.hpp"
#include "../kernels.hpp"
#include "../tags.hpp"
#include "batch_norm.cuh"
#include "buffer.cuh"
#include "launch.cuh"
#include "recurrence.cuh"
#include "runtime.cuh"

#if defined(__CUDACC__) && !defined(__CUDACC_EXTENDED_LAMBDA__)
#error "couplevae: the cuda backend needs nvcc --extended-lambda (the couplevae::cuda CMake target adds it)"
#endif

namespace couplevae {

namespace cuda_rt {

// The column-major GEMM that computes row-major C (M x N) = op(A) op(B): C^T (N x M) =
// op(B)^T op(A)^T, so the first operand is B as stored (transposed iff tb) with its row
// stride as leading dimension, the second A as stored (transposed iff ta), m = N, n = M.
struct ColumnMajorGemm {
  bool trans_first, trans_second;
  int m, n, k;
};
inline ColumnMajorGemm column_major_gemm(bool ta, bool tb, int M, int N, int K) { return {tb, ta, N, M, K}; }

// One block per row, whose values are v_k = logits_k + bias_k (bias may be null: v = logits).
// With `cached`, v is kept in the launch's dynamic shared memory (V values, at most
// softmax_cache_bytes): the logits are read once and, with keep_probs, written once (2 passes
// over global memory; eval, without keep_probs, 1). Without, the row's exp(v - max) is kept
// in place (3 reads and 2 writes; eval 2 reads). Without keep_probs the logits are left as
// they were. The arithmetic and its order are the same either way, so the two agree bit for
// bit. (tests/emulated runs this kernel on the CPU.)
constexpr size_t softmax_cache_bytes = 48 * 1024 - 32 * sizeof(double);  // the default limit less `shared`
constexpr unsigned softmax_threads = 256;                                  // a block's threads
template <class T>
__global__ void softmax_xent_kernel(T* logits, const T* bias, int V, const int32_t* targets, T* loss, bool keep_probs,
                                    bool cached) {
  __shared__ T shared[32];
  extern __shared__ __align__(16) unsigned char cache_bytes[];
  T* x = logits + size_t(blockIdx.x) * V;
  T* row = cached ? reinterpret_cast<T*>(cache_bytes) : x;  // where exp(v - max) is kept
  const auto value = [&](int k) { return bias ? x[k] + bias[k] : x[k]; };
  const int32_t target = targets[blockIdx.x];  // negative: padding, loss 0
  const T vt = target >= 0 ? value(target) : T(0);  // read before the first barrier, overwritten after it
  // The max, four loads in flight per thread (strided_loads; a loop of one load each kept one
  // in flight: 40 round trips to memory one after another for a row of PTB's 10,002 values).
  T m = -INFINITY;
  strided_loads(int(threadIdx.x), V, int(blockDim.x), value, [&](int k, T v) {
    if (cached) row[k] = v;
    m = fmax(m, v);
  });
  m = block_reduce(m, [](T a, T b) { return a > b ? a : b; }, shared);
  T s = 0;
  for (int k = threadIdx.x; k < V; k += blockDim.x) {  // each thread its own k: no barrier needed
    const T e = exp((cached ? row[k] : value(k)) - m);
    if (keep_probs) row[k] = e;
    s += e;
  }
  s = block_reduce(s, [](T a, T b) { return a + b; }, shared);
  if (threadIdx.x == 0) loss[blockIdx.x] = target >= 0 ? log(s) + m - vt : T(0);
  if (keep_probs) {
    const T inv = T(1) / s;
    for (int k = threadIdx.x; k < V; k += blockDim.x) x[k] = row[k] * inv;
  }
}

}  // namespace cuda_rt

template <>
struct ops<cuda> {
  // C (M x N) = alpha op(A) op(B) + beta C, row-major with row strides: cuBLAS computes the
  // column-major C^T = op(B)^T op(A)^T, whose operands are the row-major arrays as stored
  // (cuda_rt::column_major_gemm gives the arguments; tests/cuda checks the mapping on the host).
  template <class T>
  static void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* Bp, int ldb, T beta,
                   T* C, int ldc) {
    if (M == 0 || N == 0) return;
    cublasHandle_t h = cuda_rt::runtime().blas;
    const cuda_rt::ColumnMajorGemm g = cuda_rt::column_major_gemm(ta, tb, M, N, K);
    const cublasOperation_t oa = g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t ob = g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
    cuda_rt::fixed_op(
        [&] {
          if constexpr (sizeof(T) == 4)
            COUPLEVAE_CUBLAS(cublasSgemm(h, oa, ob, g.m, g.n, g.k, &alpha, Bp, ldb, A, lda, &beta, C, ldc));
          else
            COUPLEVAE_CUBLAS(cublasDgemm(h, oa, ob, g.m, g.n, g.k, &alpha, Bp, ldb, A, lda, &beta, C, ldc));
        },
        oa, ob, g.m, g.n, g.k, alpha, Bp, ldb, A, lda, beta, C, ldc);
  }
  // C = A Bt (+ C), the recurrence's per-step products: up to the runtime's rows_kernel_max
  // rows our own kernel (recurrence.cuh: every load of a K chunk in flight at once, one
  // launch), above a cuBLAS GEMM. At batch 32 on an H200 cuBLAS took a split-K GEMM and its
  // reduction, 11 us a backward step, in ncu.
  template <class T>
  static void gemm_few_rows(int M, int N, int K, const T* A, int lda, const T* Bt, int ldb, T* C, int ldc,
                            bool accumulate) {
    if (M <= cuda_rt::runtime().rows_kernel_max)
      cuda_rt::rows_gemm(M, N, K, A, lda, Bt, ldb, C, ldc, accumulate);
    else
      gemm(false, false, M, N, K, T(1), A, lda, Bt, ldb, accumulate ? T(1) : T(0), C, ldc);
  }
  // The GRU recurrence's own kernels (recurrence.cuh): one forward step, one backward step
  // with the product of the step before it in its epilogue's gates (false when the runtime's
  // fused_recurrence is off, or, backward, when that product has more than rows_kernel_max
  // rows: the caller composes the step, nn/gru.hpp), or, when
  // gru_whole_pass() (the runtime's persistent_recurrence), a whole pass forward or backward,
  // or two of them side by side, in one persistent kernel (false when no cooperative grid
  // can be launched).
  template <class T>
  static bool gru_step(const GruFwdStep<T>& f, const GruFwdStep<T>* second = nullptr) {
    if (!cuda_rt::runtime().fused_recurrence) return false;
    cuda_rt::gru_steps(f, second, "gru_step");
    return true;
  }
  template <class T>
  static bool gru_step(const GruBackStep<T>& b, const GruBackStep<T>* second = nullptr) {
    const cuda_rt::Runtime& rt = cuda_rt::runtime();
    if (!rt.fused_recurrence || b.pa > rt.rows_kernel_max || (second && second->pa > rt.rows_kernel_max)) return false;
    cuda_rt::gru_steps(b, second, "gru_back_step");
    return true;
  }
  static bool gru_whole_pass() { return cuda_rt::runtime().persistent_recurrence; }
  template <class T>
  static bool gru_pass(const GruForwardPass<T>& p, const GruForwardPass<T>* second = nullptr) {
    return cuda_rt::gru_passes(p, second, "gru_forward_pass");
  }
  template <class T>
  static bool gru_pass(const GruBackwardPass<T>& p, const GruBackwardPass<T>* second = nullptr) {
    return cuda_rt::gru_passes(p, second, "gru_backward_pass");
  }
  template <class T>
  static void transpose(const T* x, int rows, int cols, T* y) {
    launch<cuda>::for_each(size_t(rows) * cols, kernels::Transpose<T>{x, rows, cols, y}, "transpose");
  }
  template <class T>
  static void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, const T* Bp, T beta, T* C) {
    gemm(ta, tb, M, N, K, alpha, A, ta ? M : K, Bp, tb ? K : N, beta, C, N);
  }

  template <class T>
  static void copy(const T* x, size_t n, T* y) {
    if (n && x != y) cuda_rt::copy_async(y, x, n * sizeof(T));
  }
  template <class T>
  static void copy2d(const T* src, int rows, int cols, int ld_src, T* dst, int ld_dst) {
    if (rows == 0 || cols == 0) return;
    cuda_rt::copy2d_async(dst, size_t(ld_dst) * sizeof(T), src, size_t(ld_src) * sizeof(T), size_t(cols) * sizeof(T),
                          size_t(rows));
  }
  template <class T>
  static void add2d(const T* src, int rows, int cols, int ld_src, T* dst, int ld_dst) {
    launch<cuda>::for_each(
        size_t(rows) * cols,
        [=] __device__(size_t i) {
          const size_t r = i / cols, c = i % cols;
          dst[r * ld_dst + c] += src[r * ld_src + c];
        },
        "add2d");
  }
  template <class T>
  static void fill(T* y, size_t n, T v) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] = v; }, "fill");
  }
  template <class T>
  static void axpy(size_t n, T alpha, const T* x, T* y) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] += alpha * x[i]; }, "axpy");
  }
  template <class T>
  static void add_row_bias(T* Y, int rows, int cols, const T* b) {
    launch<cuda>::for_each(size_t(rows) * cols, [=] __device__(size_t i) { Y[i] += b[i % cols]; }, "add_row_bias");
  }
  // db (1 x cols) += ones (1 x rows) dY (rows x cols): a cuBLAS GEMM over pieces of at most
  // Runtime::ones_count rows. (A thread per column summing its rows one after another took
  // 0.47 ms for the vocabulary layer's bias at batch 512 on an H200, 7 ms of a 29 ms step.)
  template <class T>
  static void col_sum_acc(const T* dY, int rows, int cols, T* db) {
    const T* ones = cuda_rt::runtime().ones<T>();
    for (int r0 = 0; r0 < rows; r0 += cuda_rt::Runtime::ones_count) {
      const int k = std::min(rows - r0, cuda_rt::Runtime::ones_count);
      gemm(false, false, 1, cols, k, T(1), ones, k, dY + size_t(r0) * cols, cols, T(1), db, cols);
    }
  }

  template <class T>
  static void gather_rows(const T* table, int dim, const int32_t* ids, int n, T* out, int ld_out) {
    launch<cuda>::for_each(
        size_t(n) * dim,
        [=] __device__(size_t i) {
          const size_t r = i / dim, c = i % dim;
          out[r * ld_out + c] = table[size_t(ids[r]) * dim + c];
        },
        "gather_rows");
  }
  template <class T>
  static void scatter_add_rows(const T* dout, int ld_dout, const int32_t* ids, int n, int dim, T* dtable) {
    launch<cuda>::for_each(
        size_t(n) * dim,
        [=] __device__(size_t i) {
          const size_t r = i / dim, c = i % dim;
          atomicAdd(dtable + size_t(ids[r]) * dim + c, dout[r * ld_dout + c]);
        },
        "scatter_add_rows");
  }

  template <class T>
  static void normal(Rng& rng, T* out, size_t n) {
    launch<cuda>::for_each(n, kernels::NormalDraw<T>{rng.seed, rng.position, out}, "normal");
    rng.position += Rng::blocks_for(n);
  }
  template <class T>
  static void normal_rows(const RowNoise& noise, int rows, int cols, T* out) {
    launch<cuda>::for_each(size_t(rows) * size_t(cols), kernels::NormalRows<T>{noise.key, noise.ids, cols, out},
                           "normal_rows");
  }
  template <class T>
  static void uniform(Rng& rng, T* out, size_t n) {
    launch<cuda>::for_each(n, kernels::UniformDraw<T>{rng.seed, rng.position, out}, "uniform");
    rng.position += Rng::blocks_for(n);
  }
  template <class T>
  static void dropout_mask(Rng& rng, size_t n, T p, T* mask) {
    launch<cuda>::for_each(n, kernels::DropoutMask<T>{rng.seed, rng.position, p, T(1) / (T(1) - p), mask}, "dropout_mask");
    rng.position += Rng::blocks_for(n);
  }
  template <class T>
  static void mul(size_t n, const T* a, const T* b, T* y) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] = a[i] * b[i]; }, "mul");
  }
  template <class T>
  static void mul_acc(size_t n, const T* a, const T* b, T* y) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] += a[i] * b[i]; }, "mul_acc");
  }
  template <class T>
  static void tanh_forward(size_t n, const T* x, T* y) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] = tanh(x[i]); }, "tanh_forward");
  }
  template <class T>
  static void tanh_backward_acc(size_t n, const T* y, const T* dy, T* dx) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { dx[i] += dy[i] * (T(1) - y[i] * y[i]); }, "tanh_backward_acc");
  }
  template <class T>
  static void relu_forward(size_t n, const T* x, T* y) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] = x[i] > T(0) ? x[i] : T(0); }, "relu_forward");
  }
  template <class T>
  static void relu_backward_acc(size_t n, const T* y, const T* dy, T* dx) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { dx[i] += y[i] > T(0) ? dy[i] : T(0); }, "relu_backward_acc");
  }

  template <class T>
  static void gru_gates_forward(int a, int H, const T* gx, const T* gh, const T* bh, const T* h, T* r, T* z, T* n,
                                T* ghn, T* h_new, const int32_t* keep = nullptr) {
    launch<cuda>::for_each(size_t(a) * H, kernels::GruGatesForward<T>{H, gx, gh, bh, h, keep, r, z, n, ghn, h_new},
                      "gru_gates_forward");
  }
  template <class T>
  static void gru_gates_backward(int a, int H, const T* r, const T* z, const T* n, const T* ghn, const T* h,
                                 const T* ds, int ld_ds, T* dh, T* dgx, T* dgh) {
    launch<cuda>::for_each(size_t(a) * H, kernels::GruGatesBackward<T>{H, r, z, n, ghn, h, ds, ld_ds, dh, dgx, dgh},
                      "gru_gates_backward");
  }

  template <class T>
  static void softmax_xent(T* logits, int rows, int V, const int32_t* targets, T* loss, bool keep_probs = true,
                           const T* bias = nullptr) {
    if (rows == 0) return;
    const size_t row_bytes = size_t(V) * sizeof(T);
    const bool cached = row_bytes <= cuda_rt::softmax_cache_bytes;
    cuda_rt::launch_kernel(&cuda_rt::softmax_xent_kernel<T>, dim3(unsigned(rows)),
                           dim3(cuda_rt::softmax_threads), cached ? unsigned(row_bytes) : 0u, "softmax_xent", logits, bias, V, targets,
                           loss, keep_probs, cached);
  }
  template <class T>
  static void softmax_xent_backward(T* probs, int rows, int V, const int32_t* targets, const T* dloss,
                                    T* dbias = nullptr) {
    launch<cuda>::for_each(size_t(rows) * V, kernels::SoftmaxXentBackward<T>{probs, V, targets, dloss},
                      "softmax_xent_backward");
    if (dbias) col_sum_acc(probs, rows, V, dbias);  // the cuBLAS column sum Linear::backward runs
  }
  template <class T, class U>
  static void segment_sum(const T* x, const int32_t* seg, int n, U* out) {
    launch<cuda>::for_each(size_t(n), [=] __device__(size_t i) { atomicAdd(out + seg[i], U(x[i])); }, "segment_sum");
  }
  template <class T>
  static void segment_broadcast(const T* x, const int32_t* seg, int n, T* y) {
    launch<cuda>::for_each(size_t(n), [=] __device__(size_t i) { y[i] = x[seg[i]]; }, "segment_broadcast");
  }

  template <class T>
  static void gaussian_sample(int rows, int Z, const T* mu, const T* ls, const T* eps, T* z, T* kl, T* logq, T* logp) {
    launch<cuda>::for_each(size_t(rows), kernels::GaussianSample<T>{Z, mu, ls, eps, z, kl, logq, logp}, "gaussian_sample");
  }
  template <class T>
  static void gaussian_sample_backward(int rows, int Z, const T* mu, const T* ls, const T* eps, const T* dz,
                                       const T* dkl, T* dmu, T* dls) {
    launch<cuda>::for_each(size_t(rows) * Z, kernels::GaussianSampleBackward<T>{Z, mu, ls, eps, dz, dkl, dmu, dls},
                      "gaussian_sample_backward");
  }

  template <class T>
  static void coupling_forward(int rows, int D, const T* h, const T* hc, const double* scales, int n_scales, bool rq,
                               T* loss) {
    launch<cuda>::for_each(size_t(rows), kernels::CouplingForward<T>{D, h, hc, kernels::scales_of(scales, n_scales), rq, loss},
                      "coupling_forward");
  }
  template <class T>
  static void coupling_backward(int rows, int D, const T* h, const T* hc, const double* scales, int n_scales,
                                bool rq, const T* dloss, T* dh) {
    launch<cuda>::for_each(size_t(rows),
                      kernels::CouplingBackward<T>{D, h, hc, kernels::scales_of(scales, n_scales), rq, dloss, dh},
                      "coupling_backward");
  }

  template <class T>
  static void batchnorm_forward(int N, int C, const T* X, const T* gamma, const T* beta, T* run_mean, T* run_var,
                                bool training, double momentum, double eps, T* xhat, T* inv_std, T* Y) {
    if (C == 0) return;
    cuda_rt::launch_kernel(&cuda_rt::batchnorm_forward_kernel<T>, dim3(cuda_rt::bn_blocks(C)),
                           dim3(cuda_rt::bn_threads), 0, "batchnorm_forward", N, C, X, gamma, beta, run_mean, run_var,
                           training, momentum, eps, xhat, inv_std, Y);
  }
  template <class T>
  static void batchnorm_backward(int N, int C, const T* xhat, const T* inv_std, const T* gamma, const T* dY,
                                 bool training, T* dgamma, T* dbeta, T* dX) {
    if (C == 0) return;
    cuda_rt::launch_kernel(&cuda_rt::batchnorm_backward_kernel<T>, dim3(cuda_rt::bn_blocks(C)),
                           dim3(cuda_rt::bn_threads), 0, "batchnorm_backward", N, C, xhat, inv_std, gamma, dY, training,
                           dgamma, dbeta, dX);
  }

  template <class T>
  static double sum(const T* x, size_t n) {
    return launch<cuda>::sum(n, [=] __device__(size_t i) { return double(x[i]); }, "sum");
  }
  template <class T>
  static void add_scalar(T* y, size_t n, T v) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { y[i] += v; }, "add_scalar");
  }
  template <class T>
  static double sum_squares(const T* x, size_t n) {
    return launch<cuda>::sum(n, [=] __device__(size_t i) { return double(x[i]) * double(x[i]); },
                                   "sum_squares");
  }
  template <class T>
  static void sum_into(const T* x, size_t n, double scale, double* out) {
    launch<cuda>::sum_into(n, [=] __device__(size_t i) { return double(x[i]); }, scale, out, "sum_into");
  }
  template <class T>
  static void sum_squares_into(const T* x, size_t n, double scale, double* out) {
    launch<cuda>::sum_into(n, [=] __device__(size_t i) { return double(x[i]) * double(x[i]); }, scale, out,
                           "sum_squares_into");
  }
  template <class T>
  static void scale(T* x, size_t n, T s) {
    launch<cuda>::for_each(n, [=] __device__(size_t i) { x[i] *= s; }, "scale");
  }
  template <class T>
  static bool all_finite(const T* x, size_t n) {
    return launch<cuda>::sum(n, [=] __device__(size_t i) { return isfinite(x[i]) ? 0.0 : 1.0; },
                                   "all_finite") == 0.0;
  }

  template <class T>
  static void adam(size_t n, T* x, const T* g, T* m, T* v, const kernels::AdamClock* clock, double b1, double b2,
                   double eps) {
    launch<cuda>::for_each(n, kernels::AdamStep<T>{x, g, m, v, clock, T(b1), T(b2), T(eps)}, "adam");
  }
};

}  // namespace couplevae
