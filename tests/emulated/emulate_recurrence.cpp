// The persistent GRU kernels and rows_gemm_kernel of backend/cuda/recurrence.cuh, run on the CPU (ctest
// emulated.recurrence; no GPU or nvcc needed). extract_kernels.cmake turns their device code
// into plain C++; here every block and every thread of a grid is a std::thread, __syncthreads
// a per-block std::barrier, shared memory one buffer per block, and the kernels' grid barrier
// runs as written (an atomic counter that thread 0 of each block spins on).
//
// For forward and reverse passes, batches of one and two row tiles, H with and without a
// unit-tile tail and a K-chunk tail, grids smaller and larger than the step's tiles, and
// packed batches as well as bucketed rectangles (padding rows carry the state), the
// forward pass (states, previous states, gates) and the backward pass (dh, dgx, dgh) must
// equal what nn::GRU<float, cpu> computes with its composed steps (gemm_few_rows and the
// gate bodies of ops<cpu>), fed the module's own input projection and W_hh, to float
// rounding, with every output written (they start as NaN).
// The memory model is the host's: what this cannot see is a GPU's L1 serving stale lines,
// which the kernels avoid by reading other blocks' data with __ldcg.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include <couplevae/couplevae.hpp>

namespace {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx, blockIdx;
thread_local unsigned block_id;  // blockIdx.x + blockIdx.y gridDim.x
Dim3 blockDim, gridDim;
std::vector<std::unique_ptr<std::barrier<>>> block_barriers;
constexpr size_t shared_doubles = 6144;  // 48 KB of emulated shared memory per block
std::vector<std::vector<double>> block_shared;

void __syncthreads() { block_barriers[block_id]->arrive_and_wait(); }
void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <class T>
T __ldcg(const T* p) {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
}
unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
unsigned emulated_load(unsigned* p) { return std::atomic_ref<unsigned>(*p).load(); }
template <class S>
S& emulated_shared() {
  static_assert(sizeof(S) <= sizeof(double) * shared_doubles);
  return *reinterpret_cast<S*>(block_shared[block_id].data());
}

}  // namespace

namespace couplevae::cuda_rt {
#include "recurrence_kernels.inc"
}

namespace {

using namespace couplevae;

// body() on a grid of gx x gy blocks of rec_threads host threads each.
template <class Body>
void run_blocks(unsigned gx, unsigned gy, const Body& body) {
  const unsigned threads = cuda_rt::rec_threads, blocks = gx * gy;
  blockDim = {threads, 1, 1};
  gridDim = {gx, gy, 1};
  block_barriers.clear();
  block_shared.assign(blocks, std::vector<double>(shared_doubles));
  for (unsigned b = 0; b < blocks; ++b) block_barriers.emplace_back(new std::barrier<>(threads));
  std::vector<std::thread> pool;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, b, t] {
        block_id = b;
        blockIdx = {b % gx, b / gx, 0};
        threadIdx = {t, 0, 0};
        body();
      });
  for (auto& t : pool) t.join();
}

// kernel(p, counter) on a cooperative grid of `blocks` blocks.
template <class Kernel, class Pass>
void run_grid(Kernel kernel, const Pass& p, unsigned blocks) {
  unsigned counter = 0;
  run_blocks(blocks, 1, [&] { kernel(p, &counter); });
}

// max |a - b| / max |b|; infinite when a has a non-finite entry (an unwritten NaN).
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

struct Case {
  int H, batch;
  bool reverse;
  unsigned blocks;
  bool padded = false;  // a bucketed batch's rectangle (3 steps longer than the longest item)
};

// true when every output agrees with nn::GRU's composed steps on the cpu
bool check(const Case& k, uint64_t seed) {
  const int H = k.H, G = 3 * H, batch = k.batch, I = 5;
  Rng rng(seed);
  std::vector<int> lens(batch);
  for (auto& l : lens) l = 1 + int(rng.below(9));
  std::sort(lens.rbegin(), lens.rend());
  int tokens = 0;
  for (int l : lens) tokens += l;
  const Packing pk = k.padded ? Packing::rectangle(lens, lens.front() + 3, tokens) : Packing::from_steps(lens);
  const int rows = pk.rows;
  auto random = [&](size_t n) {
    std::vector<float> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = 2 * x - 1;
    return v;
  };
  Arena<float> ar;
  nn::GRU<float> gru(ar, "gru", I, H, k.reverse);
  ar.finalize();
  ar.initialise(seed);
  Context<cpu> ctx(1);
  const auto x = random(size_t(rows) * I), ds = random(size_t(rows) * H), dh_final = random(size_t(batch) * H);
  nn::GRU<float>::Cache c;
  gru.forward(ctx, ar, {const_cast<float*>(x.data()), rows, I}, pk, c);
  // the persistent forward pass reads the module's input projection and W_hh^T
  const size_t n = size_t(rows) * H;
  const std::vector<int32_t> active(pk.active.begin(), pk.active.end()), offset(pk.offset.begin(), pk.offset.end());
  std::vector<float> st(n, NAN), hp(n, NAN), r(n, NAN), z(n, NAN), nn(n, NAN), ghn(n, NAN);
  run_grid(cuda_rt::gru_forward_persistent_kernel<float>,
           GruForwardPass<float>{pk.steps, batch, H, k.reverse, active.data(), offset.data(), c.gx.data(),
                                 c.whh_t.data(), ar.value(gru.b_hh), st.data(), hp.data(), r.data(), z.data(),
                                 nn.data(), ghn.data(), k.padded ? pk.keep.data() : nullptr},
           k.blocks);
  std::vector<float> dh = dh_final, dgx(size_t(rows) * G, NAN), dgh(dgx.size(), NAN);
  run_grid(cuda_rt::gru_backward_persistent_kernel<float>,
           GruBackwardPass<float>{pk.steps, batch, H, k.reverse, active.data(), offset.data(), r.data(), z.data(),
                                  nn.data(), ghn.data(), hp.data(), ar.value(gru.W_hh), ds.data(), H, dh.data(),
                                  dgx.data(), dgh.data(), k.padded ? pk.keep.data() : nullptr},
           k.blocks);
  gru.backward(ctx, ar, {const_cast<float*>(x.data()), rows, I}, pk, {const_cast<float*>(ds.data()), rows, H},
               {const_cast<float*>(dh_final.data()), batch, H}, View<float>{}, c);
  auto module = [](const Buffer<float>& b, size_t count) { return std::vector<float>(b.data(), b.data() + count); };
  const double e[] = {rel_err(st, module(c.states, n)), rel_err(hp, module(c.hprev, n)), rel_err(r, module(c.r, n)),
                      rel_err(z, module(c.z, n)),       rel_err(nn, module(c.n, n)),     rel_err(ghn, module(c.ghn, n)),
                      rel_err(dh, module(c.dh, size_t(batch) * H)), rel_err(dgx, module(c.dgx, dgx.size())),
                      rel_err(dgh, module(c.dgh, dgh.size()))};
  const double worst = *std::max_element(std::begin(e), std::end(e));
  std::printf("H %3d, batch %2d, %d steps, %3d rows%s, %s, %u blocks: largest relative error %.2e (states %.1e, dh %.1e)\n",
              H, batch, pk.steps, rows, k.padded ? " (padded)" : "", k.reverse ? "reverse" : "forward", k.blocks, worst,
              e[0], e[6]);
  return worst < 1e-5;
}

// rows_gemm_kernel (the per-step products of the default recurrence) against a double
// triple loop: row and column tails, K over two chunks, strides, accumulating or not.
bool check_rows_gemm(int M, int N, int K, bool accumulate, uint64_t seed) {
  const int lda = K + 3, ldb = N + 2, ldc = N + 1;
  Rng rng(seed);
  auto random = [&](size_t n) {
    std::vector<float> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = 2 * x - 1;
    return v;
  };
  const auto A = random(size_t(M) * lda), B = random(size_t(K) * ldb), C0 = random(size_t(M) * ldc);
  std::vector<float> C = C0;
  const unsigned gx = unsigned((N + cuda_rt::rec_units - 1) / cuda_rt::rec_units),
                 gy = unsigned((M + cuda_rt::rec_rows - 1) / cuda_rt::rec_rows);
  run_blocks(gx, gy, [&] {
    cuda_rt::rows_gemm_kernel<float>(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate);
  });
  double num = 0, den = 1e-30;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      double want = C0[size_t(i) * ldc + j];  // the padding column stays as it was
      if (j < N) {
        double s = accumulate ? want : 0.0;
        for (int k = 0; k < K; ++k) s += double(A[size_t(i) * lda + k]) * double(B[size_t(k) * ldb + j]);
        want = s;
      }
      num = std::max(num, std::abs(double(C[size_t(i) * ldc + j]) - want));
      den = std::max(den, std::abs(want));
    }
  std::printf("rows_gemm %2d x %2d x %3d%s: relative error %.2e\n", M, N, K, accumulate ? " (accumulate)" : "",
              num / den);
  return num / den < 1e-5;
}

}  // namespace

int main() {
  // 37 = unit tiles with a tail of one unit; 301 = two K chunks of the forward (256 and 45)
  // and four of the backward (K = 903); 40
  // rows = two row tiles. Padded: the rectangle's padding rows carry the state, and its tiles
  // of padding alone skip the product.
  const Case cases[] = {{37, 40, false, 3},      {20, 40, true, 3},      {37, 7, true, 8},
                        {20, 7, false, 1},       {64, 33, false, 5},     {37, 40, false, 3, true},
                        {20, 70, true, 4, true}, {20, 7, false, 2, true}, {301, 9, true, 6},
                        {301, 40, false, 3, true}};
  int failed = 0;
  uint64_t seed = 100;
  for (const Case& k : cases) failed += !check(k, seed++);
  const int gemms[][4] = {{1, 1, 1, 0}, {7, 5, 37, 1}, {32, 8, 256, 0}, {40, 37, 300, 1}, {64, 13, 600, 1}};
  for (const auto& g : gemms) failed += !check_rows_gemm(g[0], g[1], g[2], g[3] != 0, seed++);
  if (failed) std::printf("FAILED: %d of %zu cases\n", failed, std::size(cases) + std::size(gemms));
  return failed ? 1 : 0;
}
