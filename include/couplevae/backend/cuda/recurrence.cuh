// couplevae/backend/cuda/recurrence.cuh: the GRU recurrence's own kernels (nn/gru.hpp), so
// that a pass over a packed batch (core/batch.hpp) does not cost a copy, a cuBLAS GEMM and
// a gate kernel per time step, each a host launch.
//
// One forward step over a rows at step t (gru_step_kernel, one launch per step, or per pair of
// steps of two passes side by side: BiGRU's two directions, blockIdx.z picking the pass):
//   hp[i] = h_src[i] for i < ap (the rows that ran at the previous step), 0 for ap <= i < a
//   gh = hp W_hh^T  (whh_t = W_hh^T, (H, 3H)),  then kernels::gru_cell per unit,
// writing hp, r, z, n, ghn and the new states (a, H); rows with keep[row] == 0 (keep given:
// padding of a bucketed batch) carry hp (kernels::gru_carry), and a tile of such rows alone
// skips the product (in a bucketed batch of PTB at batch 512, about two thirds of the
// rectangle's rows are padding). Tiles of 32 rows x 4 units (the 12
// columns of whh_t that hold the units' r, z and n), K in chunks of 256 through shared
// memory, each chunk's loads all issued before the first is used (rows_product); 256
// threads, warp g the k = g mod 8 of every row, then one (row, unit) each for the gates,
// whose inputs (gx, b_hh, h) are loaded before the product. The two steps' parameters are
// __grid_constant__, so picking one by blockIdx.z copies nothing to local memory (a 208-byte
// stack frame without). (The first version, 16 units a tile and K chunks of 32
// loaded one after another, ran 8 to 16 blocks per step on PTB and took 23 us a step for the
// encoder and 45 us for the decoder on an H200, in ncu: 70% of a step's device time.)
//
// One backward step over the a rows of step t (gru_step_kernel too, one launch per step or pair;
// the steps in the opposite order, backend/recurrence.hpp rec_back_step):
//   dh[i] += (dgh_next W_hh)[i] for i < pa   (dgh_next (pa, 3H): the step that ran before it)
//   d = dh[i] + ds[i];  kernels::gru_cell_backward gives dgx, dgh (a, 3H) and the z path
//   d z, left in dh[i]
// in tiles of 32 rows x 4 units (rows_gemm_tile's shape, K = 3H), the gates in the product's
// epilogue: each element of dh is read and written by its own thread, so dh is updated in
// place, and one launch per step does what a cuBLAS GEMM (at batch 32 a split-K GEMM and its
// reduction) and a gate kernel did. A tile whose rows are past pa, or padding alone
// (keep_next; their dgh is zero), skips the product.
//
// A whole pass in one persistent kernel (gru_pass_kernel, launched by gru_passes; the two
// passes of BiGRU or of Coupled's decoders in one kernel, each step's tiles of both before
// one barrier): a cooperative grid, no larger than can be resident at once, loops over the time steps
// and meets at a grid barrier (grid_barrier: a counter in device memory, zeroed before the
// launch; cooperative_groups.h is not used, as it brings a global namespace `cuda` that
// would clash with the backend tag for users of `using namespace couplevae`) after each
// step, whose tiles are those of the step kernels above; the Packing's active[] and offset[]
// are read from device memory, and the pass's step(s) (backend/recurrence.hpp) walks the
// steps as nn::GRU does.
// Data written by other blocks inside the kernel (states, dgh) is loaded with __ldcg
// (through L2, never a stale L1 line); dh with it too, although its thread wrote it.
// Not used when the runtime's persistent_recurrence is off (the default until it has been
// measured on a GPU), or when the device cannot launch a cooperative grid.
// tests/emulated extracts the device code from `rec_rows` to the first host launcher and
// runs it on host threads against the cpu's composed steps (ctest emulated.recurrence):
// keep the kernels within what extract_kernels.cmake rewrites.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>

#include "../kernels.hpp"
#include "../recurrence.hpp"
#include "runtime.cuh"

namespace couplevae::cuda_rt {

constexpr int rec_rows = 32, rec_threads = 256;
// The kernels take at most 128 registers a thread, so that two blocks fit on an SM
// (__launch_bounds__(rec_threads, 2)): a chunk's loads are held in registers
// (rows_product), and without the bound nvcc may take more (157 for the forward step in one
// version) and run one block per SM, too few at batch 512 (2,048 blocks a step of a decoder
// pair).
// Tiles are 32 rows x 4 units: the forward step's take the 12 columns of W_hh^T that hold
// their r, z and n; rows_gemm_tile's (the backward's products) 4 columns.
constexpr int rec_units = 4, rec_fwd_cols = 3 * rec_units;
constexpr int rec_groups = rec_threads / rec_rows;  // the warps of a block, each a slice of K
static_assert(rec_rows * rec_units <= rec_threads, "the gates take a thread per (row, unit) of a tile");

// rows_product's staging: a chunk of K (256 floats) of the tile's rows of A and of its C
// columns of B; after the product, `a` holds the warps' partial sums.
template <class T, int C>
struct RowsShared {
  static constexpr int kc = 1024 / int(sizeof(T));
  T a[rec_rows][kc + 1];  // + 1: the lanes (rows) read one k in distinct banks
  T b[kc][C];
};

// The product of a tile of 32 rows (row0..) of A (row-major, row stride lda) with C columns
// of B, whose entry (k, c) is load_b(k, c), over k < k_end: K in chunks of KC, then warp g
// sums k = g, g + 8, ... for its lane's row and every column. The 8 partial sums of each
// (row, column) are left in sh for rows_sum. Every thread of the block (rec_threads) calls
// it. Only the rows before rows_a are A's: the entries of the others are undefined, and so
// are those of columns that load_b reads out of bounds (the callers use neither). When
// row0 >= rows_a (A may be null then) every entry is 0.
// A chunk's loads are all issued before the first is stored: each thread's share (for
// float, a k of the 32 rows of A and of the C columns of B) is a fully unrolled loop into
// registers. No load is behind a branch or needs its value masked: a row past
// rows_a reads row row0 instead, a k past the chunk's end reads its first k (the product
// never reads those), and load_b clamps its columns likewise. (Written as one loop of
// load-and-store with a run-time trip count, as it first was, nvcc kept one load in flight
// per warp: 108 round trips to L2 one after another for a backward step of H = 256.)
// Consecutive threads read consecutive k of a row of A.
template <class T, int C, class LoadB>
__device__ void rows_product(int row0, int rows_a, const T* A, int lda, int k_end, LoadB load_b, RowsShared<T, C>& sh) {
  constexpr int TR = rec_rows, NG = rec_groups, KC = RowsShared<T, C>::kc;
  // A thread's loads a chunk: of A at its column kt of the tile's rows rt, rt + S, ..; of B
  // at its row kt, columns rt, rt + S, .. (S = 1 for float, 2 for double).
  constexpr int S = rec_threads / KC, AN = TR / S, BN = C / S;
  static_assert(rec_threads % KC == 0 && TR % S == 0 && C % S == 0, "a chunk is whole loads for every thread");
  const int lane = int(threadIdx.x) % TR, group = int(threadIdx.x) / TR;
  const int kt = int(threadIdx.x) % KC, rt = int(threadIdx.x) / KC;
  if (row0 >= rows_a) k_end = 0;  // no row of A: the product is 0
  T acc[C];
#pragma unroll
  for (int c = 0; c < C; ++c) acc[c] = T(0);
  for (int k0 = 0; k0 < k_end; k0 += KC) {
    const int kc = k_end - k0 < KC ? k_end - k0 : KC;
    T va[AN], vb[BN];
    const int kl = kt < kc ? kt : 0;  // the k this thread loads (past kc: one never read)
    const T* a_col = A + size_t(k0 + kl);
    // rows_a as a value nvcc cannot see through, so that it computes the rows' offsets here,
    // each just before its load, rather than all of them once before the loop (64 registers
    // held through the loop: the forward step spilled)
    int rows_in = rows_a;
    asm volatile("" : "+r"(rows_in));
#pragma unroll
    for (int j = 0; j < AN; ++j) {
      const int gr = row0 + rt + j * S;
      va[j] = __ldcg(a_col + size_t(gr < rows_in ? gr : row0) * lda);
    }
#pragma unroll
    for (int j = 0; j < BN; ++j) vb[j] = load_b(k0 + kl, rt + j * S);
#pragma unroll
    for (int j = 0; j < AN; ++j) sh.a[rt + j * S][kt] = va[j];
#pragma unroll
    for (int j = 0; j < BN; ++j) sh.b[kt][rt + j * S] = vb[j];
    __syncthreads();
    for (int k = group; k < kc; k += NG) {
      const T x = sh.a[lane][k];
#pragma unroll
      for (int c = 0; c < C; ++c) acc[c] += x * sh.b[k][c];
    }
    __syncthreads();
  }
  T* part = &sh.a[0][0];  // part[(group * C + column) * TR + row]
#pragma unroll
  for (int c = 0; c < C; ++c) part[(group * C + c) * TR + lane] = acc[c];
  __syncthreads();
}

// The product's entry (row rw of the tile, column c), after rows_product.
template <class T, int C>
__device__ inline T rows_sum(RowsShared<T, C>& sh, int rw, int c) {
  const T* part = &sh.a[0][0];
  T s = T(0);
  for (int g = 0; g < rec_groups; ++g) s += part[(g * C + c) * rec_rows + rw];
  return s;
}

// The forward step for the tile (row0.., unit0..) (header comment): the
// product, then one (row, unit) per thread for the gates.
template <class T>
__device__ void step_tile(int row0, int unit0, const GruFwdStep<T>& f, RowsShared<T, rec_fwd_cols>& sh) {
  constexpr int TU = rec_units;
  const int H = f.H, G = 3 * H;
  // This thread's (row, unit), if it has one: its inputs are loaded before the product, so
  // that they arrive with the product's loads rather than after it.
  const int t = int(threadIdx.x), rw = t / TU, uu = t % TU, row = row0 + rw, unit = unit0 + uu;
  const bool mine = t < rec_rows * TU && row < f.a && unit < H;
  const size_t i = size_t(row) * H + unit, gi = size_t(row) * G + unit;
  T h = T(0), x_r = T(0), x_z = T(0), x_n = T(0), b_r = T(0), b_z = T(0), b_n = T(0);
  bool carry = false;  // a padding row (f.keep): its gx holds no input, unused
  if (mine) {
    h = row < f.ap ? __ldcg(f.h_src + i) : T(0);
    carry = f.keep && !f.keep[row];
    x_r = f.gx[gi], x_z = f.gx[gi + H], x_n = f.gx[gi + 2 * H];
    b_r = f.bh[unit], b_z = f.bh[unit + H], b_n = f.bh[unit + 2 * H];
  }
  // A tile of padding rows only carries its states, which needs no product: rows are sorted
  // by length, so padding is a suffix of the step and the tile's first row decides (the
  // same for the whole block, so the loop's __syncthreads stay uniform).
  const int k_end = f.keep && !f.keep[row0] ? 0 : H;
  const T* whh_t = f.whh_t;
  rows_product(row0, f.ap, f.h_src, H, k_end,
               [=](int k, int c) {
                 const int gu = unit0 + c % TU;
                 return whh_t[size_t(k) * G + size_t(c / TU) * H + (gu < H ? gu : 0)];
               },
               sh);
  if (mine) {
    f.hp[i] = h;
    // gh of a gate: the product's for a row that ran at the previous step, else 0 (h = 0;
    // the product's entries of rows past ap are undefined)
    const auto gh = [&](int gate) { return row < f.ap ? rows_sum(sh, rw, gate * TU + uu) : T(0); };
    kernels::store(carry ? kernels::gru_carry(h) : kernels::gru_cell(x_r, x_z, x_n, gh(0), gh(1), gh(2), b_r, b_z, b_n, h),
                   i, f.r, f.z, f.n, f.ghn, f.h_new);
  }
  __syncthreads();  // the block's next tile reuses sh
}

// rows_product's load_b for the columns n0, n0 + 1, .. of B (row stride ldb, N columns;
// those past N read column 0).
template <class T>
__device__ inline auto column_block(const T* B, int ldb, int n0, int N) {
  return [=](int k, int c) { return B[size_t(k) * ldb + (n0 + c < N ? n0 + c : 0)]; };
}

// The tile (row0.., n0..) of C (M x N) = A B (+ C), row-major with row strides: the
// product over K, then one entry per thread (C read through L2: in the persistent backward
// other blocks wrote it before the barrier).
template <class T>
__device__ void rows_gemm_tile(int row0, int n0, int M, int N, int K, const T* A, int lda, const T* B, int ldb, T* Cm,
                               int ldc, bool accumulate, RowsShared<T, rec_units>& sh) {
  rows_product(row0, M, A, lda, K, column_block(B, ldb, n0, N), sh);
  for (int t = int(threadIdx.x); t < rec_rows * rec_units; t += int(blockDim.x)) {
    const int rw = t / rec_units, c = t % rec_units, row = row0 + rw, col = n0 + c;
    if (row >= M || col >= N) continue;
    const T v = rows_sum(sh, rw, c);
    T* out = Cm + size_t(row) * ldc + col;
    *out = accumulate ? __ldcg(out) + v : v;
  }
  __syncthreads();  // the block's next tile reuses sh
}

// C (M x N) = A B (+ C) for few rows M (the recurrence's per-step products), a tile a block.
template <class T>
__global__ void __launch_bounds__(rec_threads, 2) rows_gemm_kernel(int M, int N, int K, const T* A, int lda, const T* B,
                                                                int ldb, T* Cm, int ldc, bool accumulate) {
  __shared__ RowsShared<T, rec_units> sh;
  rows_gemm_tile(int(blockIdx.y) * rec_rows, int(blockIdx.x) * rec_units, M, N, K, A, lda, B, ldb, Cm, ldc, accumulate,
                 sh);
}

// The backward step for the tile (row0.., unit0..) (header comment): the
// product of the step before it over its pa rows (dgh_next W_hh, skipped by a tile whose
// rows are past pa or padding alone, keep_next), then one (row, unit) per thread for the
// gates of this step's a rows. dh is read and written by the thread of its element only.
template <class T>
__device__ void step_tile(int row0, int unit0, const GruBackStep<T>& b, RowsShared<T, rec_units>& sh) {
  constexpr int TU = rec_units;
  const int H = b.H, G = 3 * H, pa = b.pa;
  // This thread's (row, unit), if it has one: its inputs are loaded before the product (as
  // forward).
  const int t = int(threadIdx.x), rw = t / TU, uu = t % TU, row = row0 + rw, unit = unit0 + uu;
  const bool mine = t < rec_rows * TU && row < b.a && unit < H;
  const size_t i = size_t(row) * H + unit;
  T d = T(0), ds = T(0), r = T(0), z = T(0), n = T(0), ghn = T(0), hp = T(0);
  if (mine) {
    d = __ldcg(b.dh + i);
    if (b.ds) ds = b.ds[size_t(row) * b.ld_ds + unit];
    r = b.r[i], z = b.z[i], n = b.n[i], ghn = b.ghn[i], hp = b.hp[i];
  }
  const int k_end = row0 >= pa || (b.keep_next && !b.keep_next[row0]) ? 0 : G;
  rows_product(row0, pa, b.dgh_next, G, k_end, column_block(b.w_hh, H, unit0, H), sh);
  if (mine) {
    if (row < pa) d += rows_sum(sh, rw, uu);
    if (b.ds) d += ds;  // in the order of the composed step: (dh + product) + ds
    const kernels::GruCellGrad<T> c = kernels::gru_cell_backward(d, r, z, n, ghn, hp);
    kernels::store(c, size_t(row) * G + unit, H, b.dgx, b.dgh);
    b.dh[i] = c.dh;
  }
  __syncthreads();  // the block's next tile reuses sh
}

// A step's staging in shared memory: the forward tile takes 12 columns of W_hh^T, the
// backward tile 4 of W_hh.
template <class T>
RowsShared<T, rec_fwd_cols> step_shared(const GruFwdStep<T>&);
template <class T>
RowsShared<T, rec_units> step_shared(const GruBackStep<T>&);
template <class Step>
using StepShared = decltype(step_shared(std::declval<Step>()));

// One step, forward or backward, or two of passes that run side by side (blockIdx.z picks
// one): a block per tile of 32 rows x 4 units; the blocks past the picked step's rows or
// units have no tile.
template <class Step>
__global__ void __launch_bounds__(rec_threads, 2) gru_step_kernel(__grid_constant__ const Step s0,
                                                                __grid_constant__ const Step s1) {
  __shared__ StepShared<Step> sh;
  const Step& s = blockIdx.z ? s1 : s0;
  const int row0 = int(blockIdx.y) * rec_rows, unit0 = int(blockIdx.x) * rec_units;
  if (row0 >= s.a || unit0 >= s.H) return;  // the whole block: no barrier is left waiting
  step_tile(row0, unit0, s, sh);
}

// All blocks of a cooperative (co-resident) grid meet here: the k-th barrier of the kernel
// (k counted from 1 by each block in `epoch`) waits until the counter reaches k gridDim.x.
// Stores before it are visible after it to loads that go through L2 (__ldcg).
__device__ inline void grid_barrier(unsigned* counter, unsigned& epoch) {
  __syncthreads();
  ++epoch;
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
    const unsigned target = epoch * gridDim.x;
    while (*static_cast<volatile unsigned*>(counter) < target) {
    }
    __threadfence();
  }
  __syncthreads();
}

// The tiles of a step of `rows` rows: row tiles times unit tiles (unit tile tile % ut of row
// tile tile / ut, ut the unit tiles).
COUPLEVAE_HD inline int rec_tiles(int rows, int H) {
  return ((rows + rec_rows - 1) / rec_rows) * ((H + rec_units - 1) / rec_units);
}

// A whole pass, forward (s = 0, 1, ..) or backward (s = steps - 1, ..), of one GRU, or of two
// over the same Packing (passes = 2: BiGRU's directions, Coupled's decoders): each step's
// tiles of every pass spread over the grid, then one grid barrier.
template <class Pass>
__global__ void __launch_bounds__(rec_threads, 2) gru_pass_kernel(Pass p0, Pass p1, int passes, unsigned* barrier) {
  using Step = decltype(p0.step(0));
  __shared__ StepShared<Step> sh;
  unsigned epoch = 0;
  const int ut = (p0.H + rec_units - 1) / rec_units;
  for (int k = 0; k < p0.steps; ++k) {
    const int s = nth_step(p0, k);
    const Step st0 = p0.step(s), st1 = p1.step(s);
    const int tiles0 = rec_tiles(st0.a, p0.H), tiles = tiles0 + (passes == 2 ? rec_tiles(st1.a, p1.H) : 0);
    for (int tile = int(blockIdx.x); tile < tiles; tile += int(gridDim.x)) {
      const int t = tile < tiles0 ? tile : tile - tiles0, row0 = t / ut * rec_rows, unit0 = t % ut * rec_units;
      // a call for each pass, so that each step stays in registers (one call given `tile <
      // tiles0 ? st0 : st1` had both copied to a 208-224 byte stack frame)
      if (tile < tiles0)
        step_tile(row0, unit0, st0, sh);
      else
        step_tile(row0, unit0, st1, sh);
    }
    grid_barrier(barrier, epoch);
  }
}

// Launches gru_pass_kernel for p0 and, when given, p1 over a cooperative grid of at most
// one block per tile of the largest step (all `batch` rows) and no more than can be resident at once; false
// when the device cannot launch one.
template <class Pass>
bool gru_passes(const Pass& p0, const Pass* p1, const char* name) {
  const void* kernel = reinterpret_cast<const void*>(&gru_pass_kernel<Pass>);
  static thread_local int resident = -1;  // per instantiation: blocks that fit at once, 0 if none
  if (resident < 0) {
    int dev = 0, coop = 0, sms = 0, per_sm = 0;
    COUPLEVAE_CUDA(cudaGetDevice(&dev));
    COUPLEVAE_CUDA(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
    COUPLEVAE_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    COUPLEVAE_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&per_sm, kernel, rec_threads, 0,
                                                                     cudaOccupancyDefault));
    resident = coop ? sms * per_sm : 0;
  }
  if (resident <= 0) return false;
  const int passes = p1 ? 2 : 1;
  if (p0.steps == 0) return true;
  const unsigned blocks = unsigned(std::clamp(passes * rec_tiles(p0.batch, p0.H), 1, resident));
  Runtime& rt = runtime();
  memset_async(rt.barrier, sizeof(unsigned));
  KernelArgs<Pass, Pass, int, unsigned*> args(p0, p1 ? *p1 : p0, passes, rt.barrier);
  const auto run = [&] {
    check(cudaLaunchCooperativeKernel(kernel, dim3(blocks), dim3(rec_threads), args.ptrs.data(), 0, rt.stream), name,
          __FILE__, __LINE__);
  };
  std::apply([&](const auto&... a) { fixed_op(run, kernel, blocks, a...); }, args.values);
  rt.persistent_passes += size_t(passes);
  return true;
}

// A grid of one block per tile of 32 rows x 4 columns (units) over rows x cols.
inline dim3 rec_grid(int rows, int cols) {
  return dim3(unsigned((cols + rec_units - 1) / rec_units), unsigned((rows + rec_rows - 1) / rec_rows));
}

// gru_step_kernel over the tiles of s0 and, when given, of s1 in the same launch
// (blockIdx.z); nothing when neither has rows.
template <class Step>
void gru_steps(const Step& s0, const Step* s1, const char* name) {
  const int rows = std::max(s0.a, s1 ? s1->a : 0), cols = std::max(s0.H, s1 ? s1->H : 0);
  if (rows == 0) return;
  dim3 grid = rec_grid(rows, cols);
  grid.z = s1 ? 2 : 1;
  launch_kernel(&gru_step_kernel<Step>, grid, dim3(rec_threads), 0, name, s0,
                s1 ? *s1 : s0);
}

// C (M x N) = A B (+ C) by rows_gemm_kernel (row-major, row strides lda, ldb, ldc).
template <class T>
void rows_gemm(int M, int N, int K, const T* A, int lda, const T* B, int ldb, T* C, int ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  launch_kernel(&rows_gemm_kernel<T>, rec_grid(M, N), dim3(rec_threads), 0, "rows_gemm", M, N, K, A,
                lda, B, ldb, C, ldc, accumulate);
}

}  // namespace couplevae::cuda_rt
