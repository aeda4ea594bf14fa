// BatchNorm's kernels of backend/cuda/batch_norm.cuh run on the CPU (ctest
// emulated.batchnorm; no GPU or nvcc needed): extract_kernels.cmake turns their device code
// into plain C++ and emulation.hpp runs it, a block of host threads at a time.
//
// Against ops<cpu>::batchnorm_forward / batchnorm_backward, for N from 1 to 1000 rows (below
// and above the four-rows-at-a-time loop's 256) and C = 8 and 70 columns (a last block with
// threads past C), training and evaluation, Y written over X (in place) and dX given or not:
//   - y, xhat, inv_std, the running statistics, dgamma, dbeta and dX equal the host's to
//     rounding (the sums are formed in another order), every element written (the emulated
//     outputs start NaN), and a thread past the last column writes nothing (it would land
//     in the next row's columns);
//   - the same in double for N = 300, C = 70 (the kernels' double instances);
//   - without dX, the kernels leave it alone.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <couplevae/backend/cpu/ops.hpp>

#include "emulation.hpp"

namespace couplevae::cuda_rt {
using std::sqrt;
#include "batchnorm_kernels.inc"
}  // namespace couplevae::cuda_rt

namespace {

using namespace couplevae;
template <class T>
struct Outputs {
  std::vector<T> y, xhat, inv_std, run_mean, run_var, dgamma, dbeta, dX;
};

// The forward then the backward pass over X (N x C, row stride C), on the host or on the
// emulated GPU. Y is written over X; the buffers the kernels write start NaN there, except
// those they accumulate into.
template <class T>
Outputs<T> run(bool emulated, int N, int C, const std::vector<T>& X, const std::vector<T>& dY, bool training,
               bool with_dX) {
  using Vec = std::vector<T>;
  Rng rng(uint64_t(N) * 131 + uint64_t(C));
  Vec gamma(C), beta(C), run_mean(C), run_var(C);
  rng.normal(gamma.data(), size_t(C));
  rng.normal(beta.data(), size_t(C));
  rng.normal(run_mean.data(), size_t(C));
  rng.uniform(run_var.data(), size_t(C));
  for (auto& v : run_var) v += T(0.5);
  const T fill = emulated ? T(NAN) : T(0);
  Outputs<T> o{X, Vec(X.size(), fill), Vec(C, fill), run_mean, run_var, Vec(C, T(1)), Vec(C, T(2)), Vec(X.size(), T(3))};
  T* dX = with_dX ? o.dX.data() : nullptr;
  if (!emulated) {
    ops<cpu>::batchnorm_forward(N, C, o.y.data(), gamma.data(), beta.data(), o.run_mean.data(), o.run_var.data(),
                                training, 0.1, 1e-5, o.xhat.data(), o.inv_std.data(), o.y.data());
    ops<cpu>::batchnorm_backward(N, C, o.xhat.data(), o.inv_std.data(), gamma.data(), dY.data(), training,
                                 o.dgamma.data(), o.dbeta.data(), dX);
    return o;
  }
  const Dim3 grid{cuda_rt::bn_blocks(C), 1, 1};
  run_blocks(grid, cuda_rt::bn_threads, [&] {
    cuda_rt::batchnorm_forward_kernel<T>(N, C, o.y.data(), gamma.data(), beta.data(), o.run_mean.data(),
                                             o.run_var.data(), training, 0.1, 1e-5, o.xhat.data(), o.inv_std.data(),
                                             o.y.data());
  });
  run_blocks(grid, cuda_rt::bn_threads, [&] {
    cuda_rt::batchnorm_backward_kernel<T>(N, C, o.xhat.data(), o.inv_std.data(), gamma.data(), dY.data(), training,
                                              o.dgamma.data(), o.dbeta.data(), dX);
  });
  return o;
}

template <class T>
bool check(int N, int C, bool training, bool with_dX) {
  Rng rng(uint64_t(N) * 7 + uint64_t(C) + (training ? 1000 : 0));
  std::vector<T> X(size_t(N) * C), dY(X.size());
  rng.normal(X.data(), X.size());
  for (auto& x : X) x = 3 * x + T(1.5);  // a mean and a scale of their own
  rng.normal(dY.data(), dY.size());
  const Outputs<T> want = run(false, N, C, X, dY, training, with_dX);
  const Outputs<T> got = run(true, N, C, X, dY, training, with_dX);
  const double e[] = {rel_err(got.y, want.y),           rel_err(got.xhat, want.xhat),
                      rel_err(got.inv_std, want.inv_std), rel_err(got.run_mean, want.run_mean),
                      rel_err(got.run_var, want.run_var), rel_err(got.dgamma, want.dgamma),
                      rel_err(got.dbeta, want.dbeta),     rel_err(got.dX, want.dX)};
  double worst = 0;
  for (const double v : e) worst = std::max(worst, v);
  const bool ok = worst < tolerance<T>;
  std::printf("%-6s N %4d, C %2d, %-10s %-9s largest relative error %.2e (y %.1e, xhat %.1e, dgamma %.1e, dX %.1e)%s\n",
              type_name<T>, N,
              C, training ? "training" : "evaluation", with_dX ? "dX" : "no dX", worst, e[0], e[1], e[5], e[7],
              ok ? "" : "  FAILED");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int failed = 0, cases = 0;
  if (racecheck_mode(argc, argv)) {  // the sums' shared memory in both kernels, a tail block
    failed += !check<float>(300, 70, /*training=*/true, /*with_dX=*/true);
    failed += !check<float>(37, 70, /*training=*/false, /*with_dX=*/false);
    cases = 2;
  } else {
    for (const int N : {1, 37, 300, 1000})
      for (const int C : {8, 70})
        for (const bool training : {true, false}) {
          failed += !check<float>(N, C, training, /*with_dX=*/N != 37);
          ++cases;
        }
    for (const bool training : {true, false}) {  // double: past the four-rows loop, a tail block
      failed += !check<double>(300, 70, training, /*with_dX=*/true);
      ++cases;
    }
  }
  if (failed) std::printf("FAILED: %d of %d cases\n", failed, cases);
  return failed ? 1 : 0;
}
