// couplevae/backend/launch.hpp: how a backend runs a kernel body.
//
// A body is a small functor with a COUPLEVAE_HD operator()(size_t i) over one index space
// (elements, rows, columns, pairs: its comment says which). The operations of the posterior,
// regularizer and decoder families (flow_ops, vmf_ops, mmd_ops, conv_ops) and the row-wise
// entries of ops<B> are written once as bodies and run by launch<B>:
//   launch<cpu>::for_each   a host loop (OpenMP over i when asked and n is large)
//   launch<cuda>::for_each  a grid-stride kernel on the thread's stream (backend/cuda/launch.cuh)
//   launch<B>::for_each_parallel, for_each_grouped   the same, the host's loop shared among
//                           OpenMP threads (over indices, or over groups of indices)
//   launch<B>::sum          the sum over i of a body returning double, to the host
//   launch<B>::sum_into     out[0] += scale * that sum, out in the backend's memory (no wait)
// So the two backends compute the same formulas with the same indexing, and the cpu tests
// (gradient checks, independent references) check the code the GPU runs.
// atomic_add() is how a body accumulates into an output that several indices share: an
// atomicAdd on the device, a plain += on the host (where the indices that share an output
// run on one thread: for_each, or one group of for_each_grouped).
#pragma once
#include <cstddef>

#include "../core/hd.hpp"
#include "../core/omp.hpp"
#include "tags.hpp"

namespace couplevae {

template <class T>
COUPLEVAE_HD inline void atomic_add(T* p, T v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  *p += v;
#endif
}

template <class B>
struct launch;

template <>
struct launch<cpu> {
  // f(i) for i < n, in order.
  template <class F>
  static void for_each(size_t n, const F& f) {
    for (size_t i = 0; i < n; ++i) f(i);
  }
  // f(i) for i < n, shared among OpenMP threads when n * cost is large; f must write only
  // its own outputs (no atomic_add).
  template <class F>
  static void for_each_parallel(size_t n, size_t cost, const F& f) {
    const long m = long(n);
    COUPLEVAE_OMP(parallel for schedule(static) if (n * cost > 400000))
    for (long i = 0; i < m; ++i) f(size_t(i));
  }
  // f(i) for i < groups * per_group, group g being the indices [g * per_group, (g+1) *
  // per_group): groups shared among OpenMP threads when the work (cost per index) is large,
  // the indices of a group in order on one thread. f may atomic_add into outputs that only
  // indices of its own group touch.
  template <class F>
  static void for_each_grouped(size_t groups, size_t per_group, size_t cost, const F& f) {
    const long m = long(groups);
    COUPLEVAE_OMP(parallel for schedule(static) if (groups > 1 && groups * per_group * cost > 400000))
    for (long g = 0; g < m; ++g)
      for (size_t i = size_t(g) * per_group, e = i + per_group; i < e; ++i) f(i);
  }
  // sum over i < n of f(i) (double), in order.
  template <class F>
  static double sum(size_t n, const F& f) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += f(i);
    return s;
  }
  // out[0] += scale * (sum over i < n of f(i)).
  template <class F>
  static void sum_into(size_t n, const F& f, double scale, double* out) {
    *out += scale * sum(n, f);
  }
};

}  // namespace couplevae

namespace couplevae {

// How a backend runs a whole training step (train/trainer.hpp train_step):
//   bucket()                  the bucket a trainer makes its batches with (0: packed);
//   run(model, optimiser, batch, step, rewind)
//                             step() does the step's work; a backend may instead replay it
//                             from a captured graph (cuda: backend/cuda/graph.cuh), calling
//                             rewind() (restore the host state step() changes, the generator
//                             position) before running step() again when a replay fails.
// Eager on cpu.
struct Batch;
template <class B>
struct step_runner {
  static int bucket() { return 0; }
  template <class Step, class Rewind>
  static void run(const void*, const void*, const Batch&, Step&& step, Rewind&&) {
    step();
  }
};

}  // namespace couplevae
