// The GRU kernels and rows_gemm_kernel of backend/cuda/recurrence.cuh, run on the CPU (ctest
// emulated.recurrence; no GPU or nvcc needed). extract_kernels.cmake turns their device code
// into plain C++, and emulation.hpp runs it: every thread of a grid a std::thread, and the
// kernels' grid barrier as written (an atomic counter that thread 0 of each block spins on).
//
// For forward and reverse passes, batches of one and two row tiles, H with and without a
// unit-tile tail and a K-chunk tail, grids smaller and larger than the step's tiles, and
// packed batches as well as bucketed rectangles (padding rows carry the state), the
// forward pass (states, previous states, gates) and the backward pass (dh, dgx, dgh) must
// equal what nn::GRU<float, cpu> computes with its composed steps (gemm_few_rows and the
// gate bodies of ops<cpu>), fed the module's own input projection and W_hh, to float
// rounding, with every output written (they start as NaN): run by the persistent kernel
// and, for three cases, by the kernels of one step walked as nn::BiGRU walks them. Each
// launch also runs the pass (or step) of a GRU of the other direction over the same batch,
// whose outputs must equal its own module's; for three cases the persistent kernel also
// runs the one pass alone. Two cases and a rows_gemm also run in double (the kernels' other
// layout), to double rounding.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include <couplevae/couplevae.hpp>

#include "emulation.hpp"

namespace couplevae::cuda_rt {
#include "recurrence_kernels.inc"
}

namespace {

using namespace couplevae;

// gru_pass_kernel over p0 and, when given, p1 on a cooperative grid of `blocks` blocks.
template <class Pass>
void run_grid(const Pass& p0, const Pass* p1, unsigned blocks) {
  unsigned counter = 0;
  run_blocks({blocks, 1, 1}, cuda_rt::rec_threads,
             [&] { cuda_rt::gru_pass_kernel(p0, p1 ? *p1 : p0, p1 ? 2 : 1, &counter); }, /*cooperative=*/true);
}

struct Case {
  int H, batch;
  bool reverse;
  unsigned blocks;
  bool padded = false;  // a bucketed batch's rectangle (3 steps longer than the longest item)
  bool steps = false;   // also the kernels of one step (a grid per step: slow to emulate)
  bool alone = false;   // also the persistent kernel on one pass (it always runs two)
};

// What the kernels read: the packed batch, the module's input projection gx, W_hh^T, W_hh and
// b_hh, and the backward's outside gradients ds (rows, H) and dh_final (batch, H).
template <class T>
struct Inputs {
  const Packing& pk;
  int H, batch;
  bool reverse;
  const int32_t* keep;
  const T *gx, *whh_t, *w_hh, *bh, *ds, *dh_final;
};

// A pass's outputs, forward (states, previous states, gates) and backward (dh, dgx, dgh);
// all NaN until written.
template <class T>
struct Outputs {
  std::vector<T> st, hp, r, z, n, ghn, dh, dgx, dgh;
  explicit Outputs(const Inputs<T>& in) {
    const size_t rows = size_t(in.pk.rows), H = size_t(in.H);
    for (auto* v : {&st, &hp, &r, &z, &n, &ghn}) v->assign(rows * H, NAN);
    dh.assign(in.dh_final, in.dh_final + size_t(in.batch) * H);
    dgx.assign(rows * 3 * H, NAN);
    dgh.assign(rows * 3 * H, NAN);
  }
};

// The passes from in to o (the Packing's indices in host memory, as the kernels here read).
template <class T>
GruForwardPass<T> forward_pass(const Inputs<T>& in, Outputs<T>& o) {
  return {in.pk.steps,  in.batch,    in.H,       in.reverse, in.pk.active.data(), in.pk.offset.data(),
          in.gx,        in.whh_t,    in.bh,      o.st.data(), o.hp.data(),         o.r.data(),
          o.z.data(),   o.n.data(),  o.ghn.data(), in.keep};
}
template <class T>
GruBackwardPass<T> backward_pass(const Inputs<T>& in, Outputs<T>& o) {
  return {in.pk.steps, in.batch,   in.H,       in.reverse,   in.pk.active.data(), in.pk.offset.data(),
          o.r.data(),  o.z.data(), o.n.data(), o.ghn.data(), o.hp.data(),      in.w_hh,
          in.ds,       in.H,       o.dh.data(), o.dgx.data(), o.dgh.data(),     in.keep};
}

// The persistent kernel, forward then backward, each one cooperative grid of `blocks`
// blocks: the pass of in0 alone, or those of in0 and in1 side by side (as nn::BiGRU runs its
// directions).
template <class T>
std::vector<Outputs<T>> persistent(const Inputs<T>& in0, const Inputs<T>* in1, unsigned blocks) {
  std::vector<Outputs<T>> o{Outputs<T>(in0)};
  if (in1) o.emplace_back(*in1);
  const GruForwardPass<T> f0 = forward_pass(in0, o[0]), f1 = in1 ? forward_pass(*in1, o[1]) : f0;
  run_grid(f0, in1 ? &f1 : nullptr, blocks);
  const GruBackwardPass<T> b0 = backward_pass(in0, o[0]), b1 = in1 ? backward_pass(*in1, o[1]) : b0;
  run_grid(b0, in1 ? &b1 : nullptr, blocks);
  return o;
}

// The kernel of one step (gru_step_kernel, forward and backward) for two passes over the
// same Packing side by side, as nn::BiGRU runs its directions on cuda: a grid per step, a
// tile per block, blockIdx.z the pass, each pass's steps from its step(s).
template <class T>
std::pair<Outputs<T>, Outputs<T>> stepwise(const Inputs<T>& in0, const Inputs<T>& in1) {
  Outputs<T> o0(in0), o1(in1);
  const int steps = in0.pk.steps;
  const auto run_pair = [](const auto& a, const auto& b) {
    const int rows = std::max(a.a, b.a), H = std::max(a.H, b.H);
    run_blocks({unsigned((H + cuda_rt::rec_units - 1) / cuda_rt::rec_units),
                unsigned((rows + cuda_rt::rec_rows - 1) / cuda_rt::rec_rows), 2},
               cuda_rt::rec_threads, [&] { cuda_rt::gru_step_kernel(a, b); });
  };
  const GruForwardPass<T> f0 = forward_pass(in0, o0), f1 = forward_pass(in1, o1);
  for (int s = 0; s < steps; ++s) run_pair(f0.step(s), f1.step(s));
  const GruBackwardPass<T> b0 = backward_pass(in0, o0), b1 = backward_pass(in1, o1);
  for (int s = steps - 1; s >= 0; --s) run_pair(b0.step(s), b1.step(s));
  return {std::move(o0), std::move(o1)};
}

// true when every output of `got` agrees with the module's to T's rounding
template <class T>
bool agrees(const char* what, const Outputs<T>& got, const typename nn::GRU<T>::Cache& c, const Inputs<T>& in) {
  const size_t n = size_t(in.pk.rows) * in.H, nd = size_t(in.batch) * in.H, ng = got.dgx.size();
  auto module = [](const Buffer<T>& b, size_t count) { return std::vector<T>(b.data(), b.data() + count); };
  const double e[] = {rel_err(got.st, module(c.states, n)), rel_err(got.hp, module(c.hprev, n)),
                      rel_err(got.r, module(c.r, n)),       rel_err(got.z, module(c.z, n)),
                      rel_err(got.n, module(c.n, n)),       rel_err(got.ghn, module(c.ghn, n)),
                      rel_err(got.dh, module(c.dh, nd)),    rel_err(got.dgx, module(c.dgx, ng)),
                      rel_err(got.dgh, module(c.dgh, ng))};
  const double worst = *std::max_element(std::begin(e), std::end(e));
  std::printf("  %-22s largest relative error %.2e (states %.1e, dh %.1e, dgh %.1e)\n", what, worst, e[0], e[6], e[8]);
  return worst < tolerance<T>;
}

// true when the persistent kernel and (steps) the kernels of one step, paired with a GRU of
// the other direction over the same batch, and (alone) the persistent kernel on one pass,
// agree with nn::GRU<T, cpu>'s composed steps
template <class T>
bool check(const Case& k, uint64_t seed) {
  const int H = k.H, batch = k.batch, I = 5;
  Rng rng(seed);
  std::vector<int> lens(batch);
  for (auto& l : lens) l = 1 + int(rng.below(9));
  std::sort(lens.rbegin(), lens.rend());
  int tokens = 0;
  for (int l : lens) tokens += l;
  const Packing pk = k.padded ? Packing::rectangle(lens, lens.front() + 3, tokens) : Packing::from_steps(lens);
  const int rows = pk.rows;
  auto random = [&](size_t n) {
    std::vector<T> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = 2 * x - 1;
    return v;
  };
  Arena<T> ar;
  const nn::GRU<T> gru(ar, "gru", I, H, k.reverse), mirror(ar, "mirror", I, H, !k.reverse);
  ar.finalize();
  ar.initialise(seed);
  Context<cpu> ctx(1);
  const auto x = random(size_t(rows) * I);
  View<T> X{const_cast<T*>(x.data()), rows, I};
  struct Run {
    const nn::GRU<T>& module;
    std::vector<T> ds, dh_final;
    typename nn::GRU<T>::Cache c;
  };
  Run runs[2] = {{gru, random(size_t(rows) * H), random(size_t(batch) * H), {}},
                 {mirror, random(size_t(rows) * H), random(size_t(batch) * H), {}}};
  std::vector<Inputs<T>> in;
  for (Run& r : runs) {
    r.module.forward(ctx, ar, X, pk, r.c);
    // the kernels read the module's input projection and W_hh^T (its results before backward)
    in.push_back(Inputs<T>{pk, H, batch, r.module.reverse, k.padded ? pk.keep.data() : nullptr, r.c.gx.data(), r.c.whh_t.data(), ar.value(r.module.W_hh), ar.value(r.module.b_hh),
                        r.ds.data(), r.dh_final.data()});
  }
  const std::vector<Outputs<T>> p = persistent(in[0], &in[1], k.blocks);
  std::optional<std::vector<Outputs<T>>> alone;
  if (k.alone) alone = persistent<T>(in[0], nullptr, k.blocks);
  std::optional<std::pair<Outputs<T>, Outputs<T>>> st;
  if (k.steps) st = stepwise(in[0], in[1]);
  for (Run& r : runs)
    r.module.backward(ctx, ar, X, pk, {r.ds.data(), rows, H}, {r.dh_final.data(), batch, H}, View<T>{}, r.c);
  std::printf("%s, H %3d, batch %2d, %d steps, %3d rows%s, %s:\n", type_name<T>, H, batch,
              pk.steps, rows, k.padded ? " (padded)" : "", k.reverse ? "reverse" : "forward");
  char name[32];
  std::snprintf(name, sizeof name, "persistent (%u blocks)", k.blocks);
  bool ok = agrees(name, p[0], runs[0].c, in[0]);
  ok = agrees("persistent, paired", p[1], runs[1].c, in[1]) && ok;
  if (alone) ok = agrees("persistent, alone", (*alone)[0], runs[0].c, in[0]) && ok;
  if (st) {
    ok = agrees("steps", st->first, runs[0].c, in[0]) && ok;
    ok = agrees("paired", st->second, runs[1].c, in[1]) && ok;
  }
  return ok;
}

// rows_gemm_kernel (the per-step products of the default recurrence) against a double
// triple loop: row and column tails, K over two chunks, strides, accumulating or not.
template <class T>
bool check_rows_gemm(int M, int N, int K, bool accumulate, uint64_t seed) {
  const int lda = K + 3, ldb = N + 2, ldc = N + 1;
  Rng rng(seed);
  auto random = [&](size_t n) {
    std::vector<T> v(n);
    rng.uniform(v.data(), n);
    for (auto& x : v) x = 2 * x - 1;
    return v;
  };
  const auto A = random(size_t(M) * lda), B = random(size_t(K) * ldb), C0 = random(size_t(M) * ldc);
  std::vector<T> C = C0;
  const unsigned gx = unsigned((N + cuda_rt::rec_units - 1) / cuda_rt::rec_units),
                 gy = unsigned((M + cuda_rt::rec_rows - 1) / cuda_rt::rec_rows);
  run_blocks({gx, gy, 1}, cuda_rt::rec_threads, [&] {
    cuda_rt::rows_gemm_kernel<T>(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate);
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
  std::printf("%s rows_gemm %2d x %2d x %3d%s: relative error %.2e\n", type_name<T>, M, N, K,
              accumulate ? " (accumulate)" : "", num / den);
  return num / den < tolerance<T>;
}

}  // namespace

int main(int argc, char** argv) {
  // 37 = unit tiles with a tail of one unit; 301 = two K chunks of the forward (256 and 45)
  // and four of the backward (K = 903); 40
  // rows = two row tiles. Padded: the rectangle's padding rows carry the state, and its tiles
  // of padding alone skip the product.
  // --racecheck runs these two alone: the kernels of one step and the persistent kernel,
  // paired, over a padded rectangle (tiles of padding skip), with several tiles a block; and
  // rows_gemm over two row tiles and two K chunks (rows_product, which every kernel here
  // calls, reuses its shared memory from chunk to chunk).
  const Case padded_steps = {20, 7, false, 2, true, true};
  const std::array<int, 4> two_chunks = {40, 37, 300, 1};
  const std::vector<Case> all = {{37, 40, false, 3, false, true},
                                 {20, 40, true, 3, false, false, true},
                                 {37, 7, true, 8, false, true},
                                 {20, 7, false, 1, false, false, true},
                                 {64, 33, false, 5},
                                 {37, 40, false, 3, true},
                                 {20, 70, true, 4, true, false, true},
                                 padded_steps,
                                 {301, 9, true, 6},
                                 {301, 40, false, 3, true}};
  const std::vector<std::array<int, 4>> all_gemms = {
      {1, 1, 1, 0}, {7, 5, 37, 1}, {32, 8, 256, 0}, two_chunks, {64, 13, 600, 1}};
  // In double the kernels stage another shape (chunks of 128 k, each thread loading every
  // second row of the tile): a padded case with the kernels of one step, one of H = 301 (3 K
  // chunks forward, 8 backward) and a rows_gemm over 3 chunks.
  // (--racecheck runs none of them.)
  const bool few = racecheck_mode(argc, argv);
  const std::vector<Case> cases = few ? std::vector<Case>{padded_steps} : all;
  const std::vector<std::array<int, 4>> gemms = few ? std::vector<std::array<int, 4>>{two_chunks} : all_gemms;
  const std::vector<Case> double_cases = few ? std::vector<Case>{} : std::vector<Case>{{37, 40, false, 3, true, true},
                                                                                       {301, 9, true, 6}};
  const std::vector<std::array<int, 4>> double_gemms = few ? std::vector<std::array<int, 4>>{}
                                                           : std::vector<std::array<int, 4>>{two_chunks};
  int failed = 0;
  uint64_t seed = 100;
  for (const Case& k : cases) failed += !check<float>(k, seed++);
  for (const auto& g : gemms) failed += !check_rows_gemm<float>(g[0], g[1], g[2], g[3] != 0, seed++);
  for (const Case& k : double_cases) failed += !check<double>(k, seed++);
  for (const auto& g : double_gemms) failed += !check_rows_gemm<double>(g[0], g[1], g[2], g[3] != 0, seed++);
  const size_t total = cases.size() + gemms.size() + double_cases.size() + double_gemms.size();
  if (failed) std::printf("FAILED: %d of %zu cases\n", failed, total);
  return failed ? 1 : 0;
}
