// tests/emulated/emulation.hpp: a GPU on host threads, for running the device code that
// extract_kernels.cmake turns into plain C++ (emulate_recurrence.cpp, emulate_softmax.cpp,
// emulate_batchnorm.cpp).
//
// Every thread of a block is a std::thread, __syncthreads a per-block Barrier, a warp's
// __shfl_xor_sync a per-warp Barrier around a slot per lane, static shared memory
// (emulated_shared) and dynamic shared memory (emulated_dynamic_shared) one buffer per block,
// NaN until written. The memory model is the host's: what this cannot see is a GPU's L1
// serving stale lines, which the kernels avoid by reading other blocks' data with __ldcg.
// Include it once per program, before the extracted code: its state is the program's own
// (an unnamed namespace).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx, blockIdx;
thread_local unsigned block_id;  // the resident block this thread belongs to
Dim3 blockDim, gridDim;
// A barrier of n threads: a count of arrivals and a generation of its own; the last thread to
// arrive opens the next generation, the others yield until they see it. Not std::barrier:
// libstdc++'s waits go through a process-wide pool of waiter counters and mutexes shared by
// unrelated barriers, and ThreadSanitizer (ctest racecheck.*) takes each of those as an
// ordering between the threads that touch it, so a kernel's missing __syncthreads could
// hide behind another warp's barrier. Here each wait orders exactly the n threads of this
// barrier, as on a GPU. (A mutex and a condition variable were as precise, and 30% slower.)
class Barrier {
 public:
  explicit Barrier(unsigned n) : n_(n) {}
  void arrive_and_wait() {
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
  }

 private:
  const unsigned n_;
  std::atomic<unsigned> arrived_{0}, generation_{0};
};
std::vector<std::unique_ptr<Barrier>> block_barriers;
constexpr size_t shared_doubles = 6144;  // 48 KB of emulated static shared memory per block
std::vector<std::vector<double>> block_shared, block_dynamic;
struct Warp {
  Barrier sync{32};
  double lane[32];
};
std::vector<std::unique_ptr<Warp>> warps;  // warps_per_block of them per resident block
unsigned warps_per_block = 0;

inline void __syncthreads() { block_barriers[block_id]->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <class T>
inline T __ldcg(const T* p) {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline unsigned emulated_load(unsigned* p) { return std::atomic_ref<unsigned>(*p).load(); }
template <class S>
inline S& emulated_shared() {
  static_assert(sizeof(S) <= sizeof(double) * shared_doubles);
  return *reinterpret_cast<S*>(block_shared[block_id].data());
}
inline unsigned char* emulated_dynamic_shared() { return reinterpret_cast<unsigned char*>(block_dynamic[block_id].data()); }

// v of lane (this lane ^ lane_mask); every lane of the warp must take part, as the kernels'
// full masks say (float and double values pass through a double unchanged).
template <class U>
inline U __shfl_xor_sync(unsigned mask, U v, int lane_mask) {
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "emulation: __shfl_xor_sync with a partial mask is not emulated\n");
    std::abort();
  }
  Warp& w = *warps[block_id * warps_per_block + threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  w.lane[lane] = double(v);
  w.sync.arrive_and_wait();
  const U r = U(w.lane[lane ^ unsigned(lane_mask)]);
  w.sync.arrive_and_wait();  // no lane overwrites its slot before every lane has read
  return r;
}

// body() on a grid of blocks of `threads` host threads each (a multiple of 32), with
// `dynamic_bytes` of dynamic shared memory. Cooperative: every block at once, each its own
// threads (a grid barrier needs them all resident). Otherwise one block after another on
// one set of threads (a GPU of one SM), which costs far fewer thread starts; each block finds
// its shared memory NaN, as a new block may find garbage.
template <class Body>
inline void run_blocks(Dim3 grid, unsigned threads, const Body& body, bool cooperative = false, size_t dynamic_bytes = 0) {
  if (threads % 32 != 0) {
    std::fprintf(stderr, "emulation: %u threads a block is not a whole number of warps\n", threads);
    std::abort();
  }
  const unsigned blocks = grid.x * grid.y * grid.z, resident = cooperative ? blocks : 1;
  blockDim = {threads, 1, 1};
  gridDim = grid;
  warps_per_block = threads / 32;
  block_barriers.clear();
  warps.clear();
  const auto fresh = [&](unsigned r) {
    std::fill(block_shared[r].begin(), block_shared[r].end(), NAN);
    std::fill(block_dynamic[r].begin(), block_dynamic[r].end(), NAN);
  };
  block_shared.assign(resident, std::vector<double>(shared_doubles));
  block_dynamic.assign(resident, std::vector<double>((dynamic_bytes + sizeof(double) - 1) / sizeof(double)));
  for (unsigned r = 0; r < resident; ++r) {
    fresh(r);
    block_barriers.emplace_back(new Barrier(threads));
    for (unsigned w = 0; w < warps_per_block; ++w) warps.emplace_back(new Warp);
  }
  std::vector<std::thread> pool;
  for (unsigned r = 0; r < resident; ++r)
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, r, t] {
        block_id = r;
        threadIdx = {t, 0, 0};
        for (unsigned b = r; b < blocks; b += resident) {
          blockIdx = {b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)};
          body();
          if (cooperative) continue;
          __syncthreads();  // the block is done: the next one gets fresh shared memory
          if (t == 0) fresh(0);
          __syncthreads();
        }
      });
  for (auto& t : pool) t.join();
}

// The programs' one option, --racecheck: the few cases that reach every kernel and every path
// of each (shared-memory reuse across K chunks, grid barriers, tails) on small shapes, for
// the ThreadSanitizer builds (ctest racecheck.*), under which a barrier of 256 host threads
// costs some 20 times more. Any other argument is an error.
inline bool racecheck_mode(int argc, char** argv) {
  if (argc == 1) return false;
  if (argc == 2 && std::string_view(argv[1]) == "--racecheck") return true;
  std::fprintf(stderr, "usage: %s [--racecheck]\n", argv[0]);
  std::exit(2);
}

// max |a - b| / max |b|; infinite when a has a non-finite entry (an unwritten NaN).
// The largest relative error (rel_err) that still counts as T's rounding.
template <class T>
constexpr double tolerance = sizeof(T) == sizeof(float) ? 1e-5 : 1e-12;
// "float" or "double", for the programs' lines.
template <class T>
constexpr const char* type_name = sizeof(T) == sizeof(float) ? "float" : "double";

template <class T>
double rel_err(const std::vector<T>& a, const std::vector<T>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

}  // namespace
