// couplevae/core/eigen.hpp: <Eigen/Core>, included once for the library.
//
// GCC 12 with AVX-512 (-march=native on such a CPU) reports -Wmaybe-uninitialized (at -O3;
// -Wuninitialized at -O1) inside its own intrinsics header, on the `__m512 __Y = __Y;` of
// _mm512_undefined_ps, for every Eigen GEMM a translation unit instantiates: thousands of
// lines per build about code that is neither ours nor the user's. The two warnings are off
// for these headers only and restored after them, so the user's own code still gets them.
// This header must come before any other include of Eigen or <immintrin.h> to take effect.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
