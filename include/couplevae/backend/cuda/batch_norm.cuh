// couplevae/backend/cuda/batch_norm.cuh: BatchNorm1d's kernels over the rows of an (N, C)
// matrix, for ops<cuda>::batchnorm_forward / batchnorm_backward (the equations: nn/batch_norm.hpp;
// ops<cpu> forms the same sums walking rows on the host).
//
//   forward, training: mean = sum(x) / N, var = sum((x - mean)^2) / N (the running statistics
//                      move by momentum, with the unbiased var); xhat = (x - mean) inv_std,
//                      inv_std = 1 / sqrt(var + eps), y = gamma xhat + beta
//   forward, evaluation: the running statistics instead of the batch's
//   backward: sd = sum(dY), sdx = sum(dY xhat); dgamma += sdx, dbeta += sd,
//             dX += gamma inv_std (dY - sd / N - xhat sdx / N)  (evaluation: gamma inv_std dY)
//
// A block per bn_cols = 8 columns, bn_threads = 512 threads: thread t takes column
// c0 + t % 8 and the rows t / 8, t / 8 + 64, .. (a warp reads four rows of 8 consecutive
// columns, four 32-byte sectors), loading four rows before it uses any (strided_loads,
// launch.cuh); the 64 lanes' double
// sums of a column are added in shared memory (bn_column_sum). ops<cuda> first ran a thread per
// column that walked all N rows one load at a time: three passes of N round trips to memory,
// and N is the batch's tokens in the dilated CNN (about 25,600 at batch 512). The sums are
// formed in another order than the host's, so the backends agree to rounding, not bit for bit.
// X and Y may alias, as may dX and dY: every element is read before it is written, by the
// thread that writes it. tests/emulated runs these kernels on the CPU (ctest
// emulated.batchnorm): keep them within what extract_kernels.cmake rewrites.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>

#include "launch.cuh"

namespace couplevae::cuda_rt {

constexpr int bn_cols = 8, bn_lanes = 64, bn_threads = bn_cols * bn_lanes;
// The blocks of either kernel's grid: one per bn_cols columns.
constexpr unsigned bn_blocks(int C) { return unsigned((C + bn_cols - 1) / bn_cols); }

// The sum over the rows i < N of f(i) for this thread's column, in double, returned to every
// thread of that column. Every thread of the block calls it.
template <class F>
__device__ double bn_column_sum(int N, F f, double* shared /* bn_threads */) {
  const int t = int(threadIdx.x), lane = t / bn_cols;
  double s = 0;
  strided_loads(lane, N, bn_lanes, f, [&](int, double v) { s += v; });
  shared[t] = s;
  __syncthreads();
  for (int w = bn_lanes / 2; w > 0; w /= 2) {
    if (lane < w) shared[t] += shared[t + w * bn_cols];
    __syncthreads();
  }
  const double total = shared[t % bn_cols];
  __syncthreads();  // the next sum reuses shared
  return total;
}

// The thread's column, and the one it reads: a thread past the last column reads the last
// one (its block's barriers need every thread) and writes nothing.
struct BnColumn {
  int c;
  size_t read;
};
__device__ inline BnColumn bn_column(int C) {
  const int c = int(blockIdx.x) * bn_cols + int(threadIdx.x) % bn_cols;
  return {c, size_t(c < C ? c : C - 1)};
}

template <class T>
__global__ void __launch_bounds__(bn_threads)
    batchnorm_forward_kernel(int N, int C, const T* X, const T* gamma, const T* beta, T* run_mean, T* run_var,
                             bool training, double momentum, double eps, T* xhat, T* inv_std, T* Y) {
  __shared__ double shared[bn_threads];
  const BnColumn col = bn_column(C);
  const int c = col.c;
  const size_t cr = col.read;
  double mean, var;
  if (training) {
    mean = bn_column_sum(N, [&](int i) { return double(X[size_t(i) * C + cr]); }, shared) / N;
    const double ss = bn_column_sum(N,
                                    [&](int i) {
                                      const double d = double(X[size_t(i) * C + cr]) - mean;
                                      return d * d;
                                    },
                                    shared);
    var = ss / N;
    if (c < C && int(threadIdx.x) < bn_cols) {
      run_mean[c] = T((1 - momentum) * double(run_mean[c]) + momentum * mean);
      const double unbiased = N > 1 ? ss / (N - 1) : var;
      run_var[c] = T((1 - momentum) * double(run_var[c]) + momentum * unbiased);
    }
  } else {
    mean = double(run_mean[cr]);
    var = double(run_var[cr]);
  }
  if (c >= C) return;
  const T mu = T(mean), is = T(1.0 / sqrt(var + eps)), g = gamma[c], b = beta[c];
  if (int(threadIdx.x) < bn_cols) inv_std[c] = is;
  strided_loads(
      int(threadIdx.x) / bn_cols, N, bn_lanes, [&](int i) { return X[size_t(i) * C + c]; },
      [&](int i, T x) {
        const size_t o = size_t(i) * C + c;
        const T xh = (x - mu) * is;
        xhat[o] = xh;
        Y[o] = g * xh + b;
      });
}

template <class T>
__global__ void __launch_bounds__(bn_threads)
    batchnorm_backward_kernel(int N, int C, const T* xhat, const T* inv_std, const T* gamma, const T* dY,
                              bool training, T* dgamma, T* dbeta, T* dX) {
  __shared__ double shared[bn_threads];
  const BnColumn col = bn_column(C);
  const int c = col.c;
  const size_t cr = col.read;
  const double sd = bn_column_sum(N, [&](int i) { return double(dY[size_t(i) * C + cr]); }, shared);
  const double sdx = bn_column_sum(N,
                                   [&](int i) {
                                     const size_t o = size_t(i) * C + cr;
                                     return double(dY[o]) * double(xhat[o]);
                                   },
                                   shared);
  if (c >= C) return;
  if (int(threadIdx.x) < bn_cols) {
    dgamma[c] += T(sdx);
    dbeta[c] += T(sd);
  }
  if (!dX) return;
  const T k = gamma[c] * inv_std[c], md = T(sd / N), mdx = T(sdx / N);
  struct Row {
    T dy, xh, dx;
  };
  strided_loads(
      int(threadIdx.x) / bn_cols, N, bn_lanes,
      [&](int i) {
        const size_t o = size_t(i) * C + c;
        return Row{dY[o], xhat[o], dX[o]};
      },
      [&](int i, Row r) {
        dX[size_t(i) * C + c] = r.dx + (training ? k * (r.dy - md - r.xh * mdx) : k * r.dy);
      });
}

}  // namespace couplevae::cuda_rt
