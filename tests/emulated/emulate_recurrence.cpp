// The persistent GRU kernels of backend/cuda/recurrence.cuh, run on the CPU (ctest
// emulated.recurrence; no GPU or nvcc needed). extract_kernels.cmake turns their device code
// into plain C++; here every block and every thread of a grid is a std::thread, __syncthreads
// a per-block std::barrier, shared memory one buffer per block, and the kernels' grid barrier
// runs as written (an atomic counter that thread 0 of each block spins on).
//
// For forward and reverse passes, batches of one and two row tiles, H with and without a
// unit-tile tail and a K-chunk tail, and grids smaller and larger than the step's tiles, the
// forward pass (states, previous states, gates) and the backward pass (dh, dgx, dgh) must
// equal the composed steps that nn::GRU runs on the cpu (gemm_few_rows and the gate bodies
// of ops<cpu>) to float rounding, with every output written (they start as NaN).
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
Dim3 blockDim, gridDim;
std::vector<std::unique_ptr<std::barrier<>>> block_barriers;
std::vector<std::vector<double>> block_shared;

void __syncthreads() { block_barriers[blockIdx.x]->arrive_and_wait(); }
void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <class T>
T __ldcg(const T* p) {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
}
unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
unsigned emulated_load(unsigned* p) { return std::atomic_ref<unsigned>(*p).load(); }
template <class S>
S& emulated_shared() {
  static_assert(sizeof(S) <= 8 * 4096);
  return *reinterpret_cast<S*>(block_shared[blockIdx.x].data());
}

}  // namespace

namespace couplevae::cuda_rt {
#include "recurrence_kernels.inc"
}

namespace {

using namespace couplevae;

// kernel(p, counter) on a grid of `blocks` x rec_threads host threads.
template <class Kernel, class Pass>
void run_grid(Kernel kernel, const Pass& p, unsigned blocks) {
  const unsigned threads = cuda_rt::rec_threads;
  blockDim = {threads, 1, 1};
  gridDim = {blocks, 1, 1};
  block_barriers.clear();
  block_shared.assign(blocks, std::vector<double>(4096));
  for (unsigned b = 0; b < blocks; ++b) block_barriers.emplace_back(new std::barrier<>(threads));
  unsigned counter = 0;
  std::vector<std::thread> pool;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, b, t] {
        blockIdx = {b, 0, 0};
        threadIdx = {t, 0, 0};
        kernel(p, &counter);
      });
  for (auto& t : pool) t.join();
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
};

// true when every output agrees
bool check(const Case& k, uint64_t seed) {
  const int H = k.H, G = 3 * H, batch = k.batch;
  Rng rng(seed);
  std::vector<int> lens(batch);
  for (auto& l : lens) l = 1 + int(rng.below(9));
  std::sort(lens.rbegin(), lens.rend());
  const Packing pk = Packing::from_steps(lens);
  const int rows = pk.rows;
  auto random = [&](size_t n, double scale) {
    std::vector<float> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = float(scale * (2 * x - 1));
    return v;
  };
  const auto gx = random(size_t(rows) * G, 1.5), w = random(size_t(G) * H, 0.4), bh = random(G, 0.5);
  const auto ds = random(size_t(rows) * H, 1), dh_final = random(size_t(batch) * H, 1);
  std::vector<float> wt(size_t(H) * G);
  ops<cpu>::transpose(w.data(), G, H, wt.data());

  // the composed steps
  const size_t n = size_t(rows) * H;
  std::vector<float> st(n), hp(n), r(n), z(n), nn(n), ghn(n), gh(size_t(batch) * G);
  for (int s = 0; s < pk.steps; ++s) {
    const int t = k.reverse ? pk.steps - 1 - s : s, a = pk.active[t], tp = k.reverse ? t + 1 : t - 1;
    const int ap = (tp >= 0 && tp < pk.steps) ? std::min(a, pk.active[tp]) : 0;
    const size_t o = size_t(pk.offset[t]) * H;
    std::fill(hp.begin() + long(o), hp.begin() + long(o + size_t(a) * H), 0.f);
    if (ap) std::copy_n(st.data() + size_t(pk.offset[tp]) * H, size_t(ap) * H, hp.data() + o);
    ops<cpu>::gemm_few_rows(a, G, H, hp.data() + o, H, wt.data(), G, gh.data(), G, false);
    ops<cpu>::gru_gates_forward(a, H, gx.data() + size_t(pk.offset[t]) * G, gh.data(), bh.data(), hp.data() + o,
                                r.data() + o, z.data() + o, nn.data() + o, ghn.data() + o, st.data() + o);
  }
  std::vector<float> dh = dh_final, dgx(size_t(rows) * G), dgh(dgx.size());
  for (int s = pk.steps - 1; s >= 0; --s) {
    const int t = k.reverse ? pk.steps - 1 - s : s, a = pk.active[t];
    const size_t o = size_t(pk.offset[t]) * H, og = size_t(pk.offset[t]) * G;
    ops<cpu>::gru_gates_backward(a, H, r.data() + o, z.data() + o, nn.data() + o, ghn.data() + o, hp.data() + o,
                                 ds.data() + o, H, dh.data(), dgx.data() + og, dgh.data() + og);
    ops<cpu>::gemm_few_rows(a, H, G, dgh.data() + og, G, w.data(), H, dh.data(), H, true);
  }

  // the persistent kernels
  const std::vector<int32_t> active(pk.active.begin(), pk.active.end()), offset(pk.offset.begin(), pk.offset.end());
  std::vector<float> st2(n, NAN), hp2(n, NAN), r2(n, NAN), z2(n, NAN), n2(n, NAN), ghn2(n, NAN);
  run_grid(cuda_rt::gru_forward_persistent_kernel<float>,
           GruForwardPass<float>{pk.steps, batch, H, k.reverse, active.data(), offset.data(), gx.data(), wt.data(),
                                 bh.data(), st2.data(), hp2.data(), r2.data(), z2.data(), n2.data(), ghn2.data()},
           k.blocks);
  std::vector<float> dh2 = dh_final, dgx2(dgx.size(), NAN), dgh2(dgx.size(), NAN);
  run_grid(cuda_rt::gru_backward_persistent_kernel<float>,
           GruBackwardPass<float>{pk.steps, batch, H, k.reverse, active.data(), offset.data(), r2.data(), z2.data(),
                                  n2.data(), ghn2.data(), hp2.data(), w.data(), ds.data(), H, dh2.data(), dgx2.data(),
                                  dgh2.data()},
           k.blocks);
  const double e[] = {rel_err(st2, st),  rel_err(hp2, hp),  rel_err(r2, r),     rel_err(z2, z),    rel_err(n2, nn),
                      rel_err(ghn2, ghn), rel_err(dh2, dh), rel_err(dgx2, dgx), rel_err(dgh2, dgh)};
  const double worst = *std::max_element(std::begin(e), std::end(e));
  std::printf("H %3d, batch %2d, %d steps, %3d rows, %s, %u blocks: largest relative error %.2e (states %.1e, dh %.1e)\n",
              H, batch, pk.steps, rows, k.reverse ? "reverse" : "forward", k.blocks, worst, e[0], e[6]);
  return worst < 1e-5;
}

}  // namespace

int main() {
  // 37 = two unit tiles with a tail and two K chunks; 40 rows = two row tiles.
  const Case cases[] = {{37, 40, false, 3}, {20, 40, true, 3}, {37, 7, true, 8}, {20, 7, false, 1}, {64, 33, false, 5}};
  int failed = 0;
  uint64_t seed = 100;
  for (const Case& k : cases) failed += !check(k, seed++);
  if (failed) std::printf("FAILED: %d of %zu cases\n", failed, std::size(cases));
  return failed ? 1 : 0;
}
