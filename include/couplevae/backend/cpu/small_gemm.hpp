// couplevae/backend/cpu/small_gemm.hpp: C = A Bt (+ C) for a few rows, without packing.
//
// The recurrences multiply a few rows (the running sentences, M <= 64) by a weight matrix
// at every time step: (M, K) x (K, N) with the weights of size K x N (up to 256 x 768)
// far larger than the rows. A general GEMM (Eigen) repacks the weights on every call, and
// for M = 32 that copy costs about as much as the arithmetic. Here the weights are read in
// place, row-major Bt (K, N) with row stride ldb (forward: a transposed copy of W_hh made
// once per pass; backward: W_hh itself), as 2 SIMD vectors of columns against MR = 8 rows
// of broadcast A values, accumulating in registers:
//   C[m, n] = sum_k A[m, k] Bt[k, n]            (accumulate = false)
//   C[m, n] += sum_k A[m, k] Bt[k, n]           (accumulate = true)
// Column blocks are shared among the OpenMP threads when the product is large enough
// (and the caller is not already inside a parallel region). Columns left over after the
// last full block of 2 vectors, and rows after the last block of 8, go through narrower
// instantiations of the same kernel; the few trailing columns (< 1 vector) through a plain loop.
// GCC/Clang vector extensions as wide as the target's registers: 64 bytes with AVX-512
// (-march=native on such a processor), 32 with AVX, otherwise 16 (x86-64's SSE2, Arm's NEON).
// Every element's sum runs over k in order whatever the width, so results do not depend on it.
#pragma once
#include <algorithm>
#include <cstring>

#include "../../core/omp.hpp"

namespace couplevae::detail {

#if defined(__AVX512F__)
inline constexpr int simd_bytes = 64;
#elif defined(__AVX__)
inline constexpr int simd_bytes = 32;
#else
inline constexpr int simd_bytes = 16;
#endif

template <class T>
struct simd {
  static constexpr int lanes = simd_bytes / int(sizeof(T));
  typedef T vec __attribute__((vector_size(simd_bytes)));
  static vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, const vec& v) { std::memcpy(p, &v, sizeof v); }
};

// MR rows x NV vectors of columns at (A, Bt, C).
template <class T, int MR, int NV>
inline void small_gemm_tile(int K, const T* A, int lda, const T* Bt, int ldb, T* C, int ldc, bool accumulate) {
  using S = simd<T>;
  using V = typename S::vec;
  constexpr int L = S::lanes;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? S::load(C + size_t(i) * ldc + v * L) : V{};
  for (int k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = S::load(Bt + size_t(k) * ldb + v * L);
    for (int i = 0; i < MR; ++i) {
      const T a = A[size_t(i) * lda + k];
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) S::store(C + size_t(i) * ldc + v * L, acc[i][v]);
}

// All rows for the column vectors [n0, n0 + NV * lanes).
template <class T, int NV>
inline void small_gemm_columns(int M, int K, const T* A, int lda, const T* Bt, int ldb, T* C, int ldc, int n0,
                               bool accumulate) {
  int m = 0;
  for (; m + 8 <= M; m += 8)
    small_gemm_tile<T, 8, NV>(K, A + size_t(m) * lda, lda, Bt + n0, ldb, C + size_t(m) * ldc + n0, ldc, accumulate);
  const T* a = A + size_t(m) * lda;
  T* c = C + size_t(m) * ldc + n0;
  switch (M - m) {
    case 7: small_gemm_tile<T, 7, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 6: small_gemm_tile<T, 6, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 5: small_gemm_tile<T, 5, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 4: small_gemm_tile<T, 4, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 3: small_gemm_tile<T, 3, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 2: small_gemm_tile<T, 2, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    case 1: small_gemm_tile<T, 1, NV>(K, a, lda, Bt + n0, ldb, c, ldc, accumulate); break;
    default: break;
  }
}

template <class T>
void small_gemm(int M, int N, int K, const T* A, int lda, const T* Bt, int ldb, T* C, int ldc, bool accumulate) {
  constexpr int L = simd<T>::lanes, W = 2 * L;
  const int blocks = N / W;
  const double work = double(M) * N * K;
  (void)work;
  COUPLEVAE_OMP(parallel for schedule(static) if (blocks > 1 && work > 2e5 && !omp_in_parallel()))
  for (int blk = 0; blk < blocks; ++blk) small_gemm_columns<T, 2>(M, K, A, lda, Bt, ldb, C, ldc, blk * W, accumulate);
  int n0 = blocks * W;
  if (N - n0 >= L) {
    small_gemm_columns<T, 1>(M, K, A, lda, Bt, ldb, C, ldc, n0, accumulate);
    n0 += L;
  }
  for (int m = 0; m < M && n0 < N; ++m)  // the last columns, fewer than one vector
    for (int n = n0; n < N; ++n) {
      T s = accumulate ? C[size_t(m) * ldc + n] : T(0);
      for (int k = 0; k < K; ++k) s += A[size_t(m) * lda + k] * Bt[size_t(k) * ldb + n];
      C[size_t(m) * ldc + n] = s;
    }
}

}  // namespace couplevae::detail
