// couplevae/backend/mmd_ops.hpp: mmd_ops<B>, the kernels of Regularizer<MMD> (the WAE), for every backend.
//
// Maximum mean discrepancy with the inverse multiquadric (IMQ) kernel (reference.md §7
// "MMD details"), between the rows q_1..q_n of q (n, Z) and p_1..p_m of p (m, Z):
//   k_C(x, y) = C / (C + ||x - y||^2),   K(x, y) = sum_s k_{C_s}(x, y)   (one C per scale)
//   MMD = sum_{i!=j} K(q_i, q_j) / (n (n-1)) + sum_{i!=j} K(p_i, p_j) / (m (m-1))
//         - 2 sum_{i,j} K(q_i, p_j) / (n m)
// the unbiased U-statistic of MMD^2 (summed over the scales). With n < 2 or m < 2 the
// within-set averages do not exist: MMD is defined as 0 then (and its gradient is 0).
// Gradient in q (p is held fixed), with K'(r2) = dK/d(r2) = -sum_s C_s / (C_s + r2)^2:
//   dMMD/dq_i = 4 sum_{j!=i} K'(||q_i-q_j||^2) (q_i - q_j) / (n (n-1))
//             - 4 sum_j K'(||q_i-p_j||^2) (q_i - p_j) / (n m)
// (the factor 4 = 2 from d r2/dq_i times 2 because every unordered pair is counted twice).
// Row-major data in B's memory, plain pointer + size signatures; the scales C are a host
// array, passed to the bodies by value. Sums are accumulated in double for any T.
// `_backward` kernels accumulate (+=). Bodies (backend/launch.hpp): one index per row of q
// (or p), each summing over the other set; the estimate is launch<B>::sum of them.
#pragma once
#include <cstddef>

#include "../core/buffer.hpp"
#include "../core/hd.hpp"
#include "kernels.hpp"
#include "launch.hpp"

namespace couplevae {

namespace mmd_kernels {

using kernels::squared_distance;
// K(r2) = sum_s C_s / (C_s + r2).
COUPLEVAE_HD inline double imq(double r2, const kernels::Scales& C) {
  double s = 0;
  for (int i = 0; i < C.n; ++i) s += C.c[i] / (C.c[i] + r2);
  return s;
}
// K'(r2) = -sum_s C_s / (C_s + r2)^2.
COUPLEVAE_HD inline double imq_derivative(double r2, const kernels::Scales& C) {
  double s = 0;
  for (int i = 0; i < C.n; ++i) s -= C.c[i] / ((C.c[i] + r2) * (C.c[i] + r2));
  return s;
}

// Row i of x: sum over the rows j of y (j > i when within_set) of K(x_i, y_j).
template <class T>
struct KernelRowSum {
  int m, Z;
  const T *x, *y;
  kernels::Scales C;
  bool within_set;
  COUPLEVAE_HD double operator()(size_t i) const {
    double s = 0;
    for (int j = within_set ? int(i) + 1 : 0; j < m; ++j) s += imq(squared_distance(Z, x + i * Z, y + size_t(j) * Z), C);
    return s;
  }
};

// Row i of q: dq_i += a_qq sum_{j != i} K'(q_i, q_j) (q_i - q_j) + a_qp sum_j K'(q_i, p_j) (q_i - p_j).
template <class T>
struct MmdRowBackward {
  int n, m, Z;
  const T *q, *p;
  kernels::Scales C;
  double a_qq, a_qp;
  T* dq;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T* qi = q + i * Z;
    T* gi = dq + i * Z;
    for (int j = 0; j < n; ++j) {
      if (size_t(j) == i) continue;
      const T* qj = q + size_t(j) * Z;
      const double f = a_qq * imq_derivative(squared_distance(Z, qi, qj), C);
      for (int k = 0; k < Z; ++k) gi[k] += T(f * (double(qi[k]) - double(qj[k])));
    }
    for (int j = 0; j < m; ++j) {
      const T* pj = p + size_t(j) * Z;
      const double f = a_qp * imq_derivative(squared_distance(Z, qi, pj), C);
      for (int k = 0; k < Z; ++k) gi[k] += T(f * (double(qi[k]) - double(pj[k])));
    }
  }
};

}  // namespace mmd_kernels

template <class B>
struct mmd_ops {
  // out[0] += alpha * the unbiased IMQ MMD estimate between q (n, Z) and p (m, Z), summed
  // over the scales C[0..n_scales) (at most 8); the estimate is 0 when n < 2 or m < 2. out
  // is a double in the backend's memory (three sum_into reductions, no host wait).
  template <class T>
  static void imq_mmd_into(int n, int m, int Z, const T* q, const T* p, const double* C, int n_scales, double alpha,
                           double* out) {
    if (n < 2 || m < 2) return;
    using mmd_kernels::KernelRowSum;
    const kernels::Scales s = kernels::scales_of(C, n_scales);
    // Unordered pairs are counted once by the row sums: the ordered sums are twice these.
    launch<B>::sum_into(size_t(n), KernelRowSum<T>{n, Z, q, q, s, true}, alpha * 2 / (double(n) * (n - 1)), out);
    launch<B>::sum_into(size_t(m), KernelRowSum<T>{m, Z, p, p, s, true}, alpha * 2 / (double(m) * (m - 1)), out);
    launch<B>::sum_into(size_t(n), KernelRowSum<T>{m, Z, q, p, s, false}, -alpha * 2 / (double(n) * m), out);
  }
  // The estimate itself, on the host (waits for the backend).
  template <class T>
  static double imq_mmd(int n, int m, int Z, const T* q, const T* p, const double* C, int n_scales) {
    Buffer<double, B> out;
    out.zeros(1, 1);
    imq_mmd_into(n, m, Z, q, p, C, n_scales, 1.0, out.data());
    return out.to_host()[0];
  }

  // dq += alpha * dMMD/dq for the estimate of imq_mmd (p is a constant); nothing when
  // n < 2 or m < 2.
  template <class T>
  static void imq_mmd_backward(int n, int m, int Z, const T* q, const T* p, const double* C, int n_scales,
                               double alpha, T* dq) {
    if (n < 2 || m < 2) return;
    const double a_qq = 4 * alpha / (double(n) * (n - 1)), a_qp = -4 * alpha / (double(n) * m);
    launch<B>::for_each(size_t(n), mmd_kernels::MmdRowBackward<T>{n, m, Z, q, p, kernels::scales_of(C, n_scales),
                                                                   a_qq, a_qp, dq});
  }
};

}  // namespace couplevae
