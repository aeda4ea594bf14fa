// couplevae/backend/cuda/launch.cuh: launch<cuda>, how the cuda backend runs a kernel body.
//
// for_each(n, body): a grid-stride kernel over i < n on the thread's stream (256 threads a
// block, at most 65536 blocks); for_each_parallel and for_each_grouped are the same
// (every index runs in parallel on a GPU; bodies that share outputs use atomic_add). sum_into(n, body, scale, out): out[0] += scale * the double sum of
// body(i), block reductions with warp shuffles then one atomicAdd per block, in stream
// order (no wait). sum(n, body): the same into the runtime's scratch, copied to the host
// (this waits for the stream). block_reduce() is shared with the other kernels of ops.cuh.
// Kernels go through cuda_rt::launch_kernel (graph.cuh), so a captured step records them.
#pragma once
#include <algorithm>
#include <cstddef>

#include "../launch.hpp"
#include "runtime.cuh"

namespace couplevae {

namespace cuda_rt {

template <class F>
__global__ void for_each_kernel(size_t n, F f) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) f(i);
}

// f(i) for every i < n, on the thread's stream.
template <class F>
void for_each(size_t n, const F& f, const char* name) {
  if (n == 0) return;
  constexpr int threads = 256;
  const size_t blocks = std::min<size_t>((n + threads - 1) / threads, size_t(1) << 16);
  launch_kernel(&for_each_kernel<F>, dim3(unsigned(blocks)), dim3(threads), 0, name, n, f);
}

// Sum over a block of 256 threads (every thread gets the result).
template <class U, class Op>
__device__ U block_reduce(U v, Op op, U* shared /* 32 */) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = shared[0];
  for (int w = 1; w < warps; ++w) v = op(v, shared[w]);
  __syncthreads();
  return v;
}

// use(i, load(i)) for i = first, first + step, .. < n, in that order, four loads issued
// before the first of their uses (a loop of load-then-use keeps one load in flight per
// thread, a round trip to memory each; the kernels' row and column walks and reduce_kernel go
// through this).
// A use may write what its own load read (in place), not what a later load reads.
template <class I, class Load, class Use>
__device__ void strided_loads(I first, I n, I step, Load load, Use use) {
  using V = decltype(load(first));
  I i = first;
  for (; i + 3 * step < n; i += 4 * step) {
    V v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = load(i + u * step);
#pragma unroll
    for (int u = 0; u < 4; ++u) use(i + u * step, v[u]);
  }
  for (; i < n; i += step) use(i, load(i));
}

// out[0] += scale * (sum of f(i) for i < n), in double.
template <class F>
__global__ void reduce_kernel(size_t n, F f, double scale, double* out) {
  __shared__ double shared[32];
  double s = 0;
  strided_loads(size_t(blockIdx.x) * blockDim.x + threadIdx.x, n, size_t(gridDim.x) * blockDim.x, f,
                [&](size_t, double v) { s += v; });
  s = block_reduce(s, [](double a, double b) { return a + b; }, shared);
  if (threadIdx.x == 0) atomicAdd(out, scale * s);
}

// reduce_kernel's grid for n terms: blocks of reduce_threads, at most 1024 of them (about 30
// terms a thread for the gradient norm of couple-vae's arena at the PTB sizes).
constexpr unsigned reduce_threads = 256;
constexpr unsigned reduce_blocks(size_t n) {
  return unsigned(std::min<size_t>((n + reduce_threads - 1) / reduce_threads, 1024));
}

// out[0] += scale * (sum of f(i) for i < n), on the thread's stream; out is device memory.
template <class F>
void reduce_into(size_t n, const F& f, double scale, double* out, const char* name) {
  if (n == 0) return;
  launch_kernel(&reduce_kernel<F>, dim3(reduce_blocks(n)), dim3(reduce_threads), 0,
                name, n, f, scale, out);
}

// sum of f(i) for i < n, in double, returned to the host (waits for the stream).
template <class F>
double reduce_to_host(size_t n, const F& f, const char* name) {
  Runtime& rt = runtime();
  rt.outside_graphs("reading a sum back");
  COUPLEVAE_CUDA(cudaMemsetAsync(rt.scratch, 0, sizeof(double), rt.stream));
  reduce_into(n, f, 1.0, rt.scratch, name);
  double out = 0;
  COUPLEVAE_CUDA(cudaMemcpyAsync(&out, rt.scratch, sizeof(double), cudaMemcpyDeviceToHost, rt.stream));
  rt.sync();
  return out;
}

}  // namespace cuda_rt

template <>
struct launch<cuda> {
  template <class F>
  static void for_each(size_t n, const F& f, const char* name = "couplevae kernel") {
    cuda_rt::for_each(n, f, name);
  }
  template <class F>
  static void for_each_parallel(size_t n, size_t /*cost*/, const F& f) {
    cuda_rt::for_each(n, f, "couplevae kernel");
  }
  template <class F>
  static void for_each_grouped(size_t groups, size_t per_group, size_t /*cost*/, const F& f) {
    cuda_rt::for_each(groups * per_group, f, "couplevae kernel");
  }
  template <class F>
  static double sum(size_t n, const F& f, const char* name = "couplevae reduction") {
    return cuda_rt::reduce_to_host(n, f, name);
  }
  template <class F>
  static void sum_into(size_t n, const F& f, double scale, double* out, const char* name = "couplevae reduction") {
    cuda_rt::reduce_into(n, f, scale, out, name);
  }
};

}  // namespace couplevae
