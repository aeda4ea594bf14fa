// couplevae/core/omp.hpp: OpenMP that vanishes without -fopenmp.
//
// COUPLEVAE_OMP(directive) is `#pragma omp directive` when the translation unit is compiled
// with OpenMP and nothing otherwise, so that a program built without it (or with nvcc
// without -Xcompiler=-fopenmp) sees no unknown pragma (-Wall's -Wunknown-pragmas). The
// thread queries answer as a single thread would there. (Inside COUPLEVAE_OMP's own clauses
// OpenMP is on by definition, so they call omp_* directly.)
#pragma once

#ifdef _OPENMP
#include <omp.h>
#define COUPLEVAE_OMP_STRING(...) #__VA_ARGS__
#define COUPLEVAE_OMP(...) _Pragma(COUPLEVAE_OMP_STRING(omp __VA_ARGS__))
#else
#define COUPLEVAE_OMP(...)
#endif

namespace couplevae::omp {

// The threads a parallel region would have (1 without OpenMP).
inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
// This thread's number in its parallel region (0 without OpenMP).
inline int thread_num() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace couplevae::omp
