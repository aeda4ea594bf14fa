// couplevae/backend/cpu/mmd_ops.hpp: mmd_ops<cpu>, the kernels of Regularizer<MMD> (the WAE).
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
// Row-major data, plain pointer + size signatures: the ones an mmd_ops<cuda> will implement.
// Sums are accumulated in double for any T. `_backward` kernels accumulate (+=).
#pragma once
#include <cstddef>
#include <type_traits>

#include "../tags.hpp"

namespace couplevae {

// The primary template is never used: the backend's mmd_ops header provides the
// specialisation (this one for cpu).
template <class B>
struct mmd_ops {
  static_assert(is_backend_v<B>, "couplevae: mmd_ops<B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: mmd_ops<cuda> is not visible: include the cuda backend's mmd_ops header and "
                "compile this translation unit with nvcc (COUPLEVAE_WITH_CUDA=ON)");
};

template <>
struct mmd_ops<cpu> {
  // ||x - y||^2 over Z entries.
  template <class T>
  static double squared_distance(int Z, const T* x, const T* y) {
    double d = 0;
    for (int k = 0; k < Z; ++k) {
      const double e = double(x[k]) - double(y[k]);
      d += e * e;
    }
    return d;
  }
  // K(r2) = sum_s C_s / (C_s + r2).
  static double imq(double r2, const double* C, int n_scales) {
    double s = 0;
    for (int i = 0; i < n_scales; ++i) s += C[i] / (C[i] + r2);
    return s;
  }
  // K'(r2) = -sum_s C_s / (C_s + r2)^2.
  static double imq_derivative(double r2, const double* C, int n_scales) {
    double s = 0;
    for (int i = 0; i < n_scales; ++i) s -= C[i] / ((C[i] + r2) * (C[i] + r2));
    return s;
  }

  // The unbiased IMQ MMD estimate between q (n, Z) and p (m, Z), summed over the scales
  // C[0..n_scales); 0 when n < 2 or m < 2.
  template <class T>
  static double imq_mmd(int n, int m, int Z, const T* q, const T* p, const double* C, int n_scales) {
    if (n < 2 || m < 2) return 0;
    double qq = 0, pp = 0, qp = 0;
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j)
        qq += imq(squared_distance(Z, q + size_t(i) * Z, q + size_t(j) * Z), C, n_scales);
    for (int i = 0; i < m; ++i)
      for (int j = i + 1; j < m; ++j)
        pp += imq(squared_distance(Z, p + size_t(i) * Z, p + size_t(j) * Z), C, n_scales);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < m; ++j)
        qp += imq(squared_distance(Z, q + size_t(i) * Z, p + size_t(j) * Z), C, n_scales);
    // Unordered pairs counted once above: the ordered sums are twice these.
    return 2 * qq / (double(n) * (n - 1)) + 2 * pp / (double(m) * (m - 1)) - 2 * qp / (double(n) * m);
  }

  // dq += alpha * dMMD/dq for the estimate of imq_mmd (p is a constant); nothing when
  // n < 2 or m < 2.
  template <class T>
  static void imq_mmd_backward(int n, int m, int Z, const T* q, const T* p, const double* C, int n_scales,
                               double alpha, T* dq) {
    if (n < 2 || m < 2) return;
    const double a_qq = 4 * alpha / (double(n) * (n - 1)), a_qp = -4 * alpha / (double(n) * m);
    for (int i = 0; i < n; ++i) {
      const T* qi = q + size_t(i) * Z;
      T* gi = dq + size_t(i) * Z;
      for (int j = 0; j < n; ++j) {
        if (j == i) continue;
        const T* qj = q + size_t(j) * Z;
        const double f = a_qq * imq_derivative(squared_distance(Z, qi, qj), C, n_scales);
        for (int k = 0; k < Z; ++k) gi[k] += T(f * (double(qi[k]) - double(qj[k])));
      }
      for (int j = 0; j < m; ++j) {
        const T* pj = p + size_t(j) * Z;
        const double f = a_qp * imq_derivative(squared_distance(Z, qi, pj), C, n_scales);
        for (int k = 0; k < Z; ++k) gi[k] += T(f * (double(qi[k]) - double(pj[k])));
      }
    }
  }
};

}  // namespace couplevae
