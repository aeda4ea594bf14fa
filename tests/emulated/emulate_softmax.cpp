// softmax_xent_kernel of backend/cuda/ops.cuh and reduce_kernel of launch.cuh (and the
// block_reduce and strided_loads of launch.cuh they call) run on the CPU (ctest
// emulated.softmax; no GPU or nvcc needed): extract_kernels.cmake turns their device code into
// plain C++ and emulation.hpp runs it, a block of host threads per row, its warps' shuffles
// included.
//
// softmax_xent_kernel, for V = 13 and 3000 (the row in shared memory; 3000 takes the max's
// loop of four loads a thread twice, then its single loads) and one float more than that
// memory holds (in place), with and without a bias, training (keep_probs) and evaluation
// (loss only), on rows whose targets include the first and last value and a padding row
// (target -1), in float, and in double for V = 3000 and one double more than the memory holds:
//   - the losses equal ops<cpu>::softmax_xent's to rounding, the padding row's exactly 0;
//   - training: the logits become the probabilities ops<cpu> gives, every value written;
//   - evaluation: the logits are left exactly as they were;
//   - the kernel gives the same losses and probabilities bit for bit with the row in shared
//     memory and in place (V = 3000 run both ways), as its comment says.
// reduce_kernel (launch<cuda>::sum_into: the step guard's gradient norm), a sum of squares
// of small integers so that every sum is exact in double whatever its order: equal to the
// sum taken here, term by term, into a total it adds to (scaled), for n = 1 (one thread of
// the grid has a term), 1000 on reduce_blocks(1000) blocks (a last block part full) and
// 20000 on 3 blocks (the grid capped: 26 or 27 terms a thread, groups of four loads, then
// the single ones).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include <couplevae/backend/cpu/ops.hpp>

#include "emulation.hpp"

namespace couplevae::cuda_rt {
using std::exp;
using std::fmax;
using std::log;
#include "softmax_kernels.inc"
}  // namespace couplevae::cuda_rt

namespace {

using namespace couplevae;

template <class T>
struct Result {
  std::vector<T> logits, loss;
};

// The kernel on `logits` (rows x V), a block of softmax_threads per row, as ops<cuda>::softmax_xent
// launches it (dynamic shared memory of a row when cached); loss starts NaN.
template <class T>
Result<T> run_kernel(std::vector<T> logits, int V, const T* bias, const std::vector<int32_t>& targets, bool keep_probs,
                     bool cached) {
  const int rows = int(targets.size());
  std::vector<T> loss(rows, NAN);
  run_blocks({unsigned(rows), 1, 1}, cuda_rt::softmax_threads, [&] {
    cuda_rt::softmax_xent_kernel<T>(logits.data(), bias, V, targets.data(), loss.data(), keep_probs, cached);
  }, /*cooperative=*/false, cached ? size_t(V) * sizeof(T) : 0);
  return {std::move(logits), std::move(loss)};
}

template <class T>
bool check(int V, bool with_bias, bool keep_probs, bool both_ways, uint64_t seed) {
  const bool cached = size_t(V) * sizeof(T) <= cuda_rt::softmax_cache_bytes;
  Rng rng(seed);
  auto random = [&](size_t n, T scale) {
    std::vector<T> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = scale * (2 * x - 1);
    return v;
  };
  const std::vector<int32_t> targets = {0, V - 1, -1, int32_t(V / 2), int32_t(V / 3)};
  const int rows = int(targets.size());
  const auto logits = random(size_t(rows) * V, 6), b = random(size_t(V), 2);
  const T* bias = with_bias ? b.data() : nullptr;

  std::vector<T> want = logits, want_loss(rows);
  ops<cpu>::softmax_xent(want.data(), rows, V, targets.data(), want_loss.data(), /*keep_probs=*/true, bias);
  const Result<T> got = run_kernel(logits, V, bias, targets, keep_probs, cached);

  const double e_loss = rel_err(got.loss, want_loss);
  const double e_out = keep_probs ? rel_err(got.logits, want) : (got.logits == logits ? 0.0 : INFINITY);
  bool ok = e_loss < tolerance<T> && e_out < tolerance<T> && got.loss[2] == T(0);
  bool same = true;
  if (both_ways) {
    const Result<T> other = run_kernel(logits, V, bias, targets, keep_probs, !cached);
    same = other.loss == got.loss && other.logits == got.logits;
    ok = ok && same;
  }
  std::printf("%-6s V %5d %-9s %-9s %-10s: loss %.2e, %s %.2e%s%s\n", type_name<T>, V,
              cached ? "(cached)" : "(in place)",
              with_bias ? "bias" : "no bias", keep_probs ? "training" : "loss only", e_loss,
              keep_probs ? "probabilities" : "logits kept", e_out,
              both_ways ? (same ? ", cached = in place bit for bit" : ", cached and in place DIFFER") : "",
              ok ? "" : "  FAILED");
  return ok;
}

// reduce_kernel over n terms on `blocks` blocks of reduce_threads.
bool check_reduce(size_t n, unsigned blocks) {
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = float(int((i * 2654435761u) % 13) - 6);
  const auto square = [&](size_t i) { return double(g[i]) * g[i]; };
  const double scale = 0.25, before = 0.5;
  double want = 0;
  for (size_t i = 0; i < n; ++i) want += square(i);
  want = before + scale * want;
  double out = before;
  run_blocks({blocks, 1, 1}, cuda_rt::reduce_threads, [&] { cuda_rt::reduce_kernel(n, square, scale, &out); });
  const bool ok = out == want;
  std::printf("reduce n %6zu on %u blocks: %.17g, want %.17g%s\n", n, blocks, out, want, ok ? "" : "  FAILED");
  return ok;
}

static_assert(cuda_rt::reduce_blocks(1) == 1 && cuda_rt::reduce_blocks(1000) == 4 &&
              cuda_rt::reduce_blocks(256 * 1024) == 1024 && cuda_rt::reduce_blocks(7506404) == 1024);

}  // namespace

int main(int argc, char** argv) {
  const int beyond = int(cuda_rt::softmax_cache_bytes / sizeof(float)) + 1;  // in place
  const int beyond_double = int(cuda_rt::softmax_cache_bytes / sizeof(double)) + 1;
  // --racecheck: V = 3000 alone, which runs cached and in place, both past four loads a thread
  // (and the capped grid of reduce_kernel, below)
  const bool few = racecheck_mode(argc, argv);
  const std::vector<int> sizes = few ? std::vector<int>{3000} : std::vector<int>{13, 3000, beyond};
  int failed = 0, cases = 0;
  uint64_t seed = 300;
  for (int V : sizes)
    for (bool with_bias : {false, true})
      for (bool keep_probs : {true, false}) {
        failed += !check<float>(V, with_bias, keep_probs, /*both_ways=*/V == 3000, seed++);
        ++cases;
      }
  // double (no racecheck): V = 3000 (cached, and in place) and the first V not cached
  for (int V : few ? std::vector<int>{} : std::vector<int>{3000, beyond_double})
    for (bool with_bias : {false, true})
      for (bool keep_probs : {true, false}) {
        failed += !check<double>(V, with_bias, keep_probs, /*both_ways=*/V == 3000, seed++);
        ++cases;
      }
  // reduce_kernel; --racecheck: the capped grid alone
  const std::vector<std::pair<size_t, unsigned>> sums = {{1, cuda_rt::reduce_blocks(1)},
                                                         {1000, cuda_rt::reduce_blocks(1000)},
                                                         {20000, 3}};
  for (size_t k = few ? 2 : 0; k < sums.size(); ++k) {
    failed += !check_reduce(sums[k].first, sums[k].second);
    ++cases;
  }
  if (failed) std::printf("FAILED: %d of %d cases\n", failed, cases);
  return failed ? 1 : 0;
}
