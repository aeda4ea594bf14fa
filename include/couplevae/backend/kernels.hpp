// couplevae/backend/kernels.hpp: the bodies (backend/launch.hpp) of the row-wise entries of ops<B>.
//
// Each body is a small functor with a COUPLEVAE_HD operator()(size_t i) over one index
// space (elements, rows or columns, as its comment says). ops<cuda> launches every one of
// them; ops<cpu> runs the posterior and coupling bodies in host loops too and
// keeps its own SIMD versions of the hot element-wise ones (GRU gates, Adam, softmax), which
// tests/cuda compares with these bodies on the host. Accumulating bodies (`_acc` in ops)
// add into their outputs.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/error.hpp"
#include "../core/hd.hpp"
#include "../core/rng.hpp"

namespace couplevae::kernels {

template <class T>
COUPLEVAE_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// PyTorch's GRU cell for one unit, given the input and recurrent projections of its three
// gates (x_*, g_*, without b_hh) and b_hh (b_*):
//   r = s(x_r + g_r + b_r), z = s(x_z + g_z + b_z), ghn = g_n + b_n,
//   n = tanh(x_n + r ghn), h' = (1 - z) n + z h.
template <class T>
struct GruCell {
  T r, z, n, ghn, h_new;
};
template <class T>
COUPLEVAE_HD inline GruCell<T> gru_cell(T x_r, T x_z, T x_n, T g_r, T g_z, T g_n, T b_r, T b_z, T b_n, T h) {
  GruCell<T> c;
  c.r = sigmoid(x_r + g_r + b_r);
  c.z = sigmoid(x_z + g_z + b_z);
  c.ghn = g_n + b_n;
  c.n = std::tanh(x_n + c.r * c.ghn);
  c.h_new = (T(1) - c.z) * c.n + c.z * h;
  return c;
}
// Element i of the cell's outputs (rows of H).
template <class T>
COUPLEVAE_HD inline void store(const GruCell<T>& c, size_t i, T* r, T* z, T* n, T* ghn, T* h_new) {
  r[i] = c.r;
  z[i] = c.z;
  n[i] = c.n;
  ghn[i] = c.ghn;
  h_new[i] = c.h_new;
}

// The cell of a padding row of a bucketed batch (core/batch.hpp): h' = h, saved as
// r = 0, z = 1, n = 0, ghn = 0, so gru_cell_backward passes dL/dh' through unchanged
// (dh = d z = d) and gives exactly zero gate gradients.
template <class T>
COUPLEVAE_HD inline GruCell<T> gru_carry(T h) {
  return GruCell<T>{T(0), T(1), T(0), T(0), h};
}

// i < a*H: PyTorch's GRU gates (backend/cpu/ops.hpp gru_gates_forward; gh without its bias
// bh); rows with keep[row] == 0 (keep given) carry h instead (gru_carry).
template <class T>
struct GruGatesForward {
  int H;
  const T *gx, *gh, *bh, *h;
  const int32_t* keep;
  T *r, *z, *n, *ghn, *h_new;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t row = i / H, k = i % H, g = row * 3 * H + k;
    if (keep && !keep[row]) return store(gru_carry(h[i]), i, r, z, n, ghn, h_new);
    store(gru_cell(gx[g], gx[g + H], gx[g + 2 * H], gh[g], gh[g + H], gh[g + 2 * H], bh[k], bh[k + H], bh[k + 2 * H],
                   h[i]),
          i, r, z, n, ghn, h_new);
  }
};

// Backward of gru_cell for one unit, given d = dL/dh' and the cell's saved r, z, n, ghn and
// h: the gradients on the gates' pre-activations (the input side dar, daz, dan; the
// recurrent side the same but dghn = dan r for n) and dh = d z, the z path of dL/dh.
template <class T>
struct GruCellGrad {
  T dar, daz, dan, dghn, dh;
};
template <class T>
COUPLEVAE_HD inline GruCellGrad<T> gru_cell_backward(T d, T r, T z, T n, T ghn, T h) {
  GruCellGrad<T> g;
  g.dan = d * (T(1) - z) * (T(1) - n * n);
  g.daz = d * (h - n) * z * (T(1) - z);
  g.dar = g.dan * ghn * r * (T(1) - r);
  g.dghn = g.dan * r;
  g.dh = d * z;
  return g;
}
// The gate gradients at g, the unit's r entry in rows of 3H (z at g + H, n at g + 2H).
template <class T>
COUPLEVAE_HD inline void store(const GruCellGrad<T>& c, size_t g, int H, T* dgx, T* dgh) {
  dgx[g] = c.dar;
  dgx[g + H] = c.daz;
  dgx[g + 2 * H] = c.dan;
  dgh[g] = c.dar;
  dgh[g + H] = c.daz;
  dgh[g + 2 * H] = c.dghn;
}

// i < a*H: backward of the gates; dh in: dL/dh' (plus ds[row * ld_ds + k] when ds is given),
// out: the z path (dL/dh minus dgh W_hh).
template <class T>
struct GruGatesBackward {
  int H;
  const T *r, *z, *n, *ghn, *h, *ds;
  int ld_ds;
  T *dh, *dgx, *dgh;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t row = i / H, k = i % H, g = row * 3 * H + k;
    const T d = dh[i] + (ds ? ds[row * ld_ds + k] : T(0));
    const GruCellGrad<T> c = gru_cell_backward(d, r[i], z[i], n[i], ghn[i], h[i]);
    store(c, g, H, dgx, dgh);
    dh[i] = c.dh;
  }
};

// i < rows: the Gaussian posterior's sample and per-row KL, log q, log p (one row each).
template <class T>
struct GaussianSample {
  int Z;
  const T *mu, *ls, *eps;
  T *z, *kl, *logq, *logp;
  COUPLEVAE_HD void operator()(size_t i) const {
    const T half_log_2pi = T(0.91893853320467274178);
    T k = 0, q = 0, p = 0;
    for (int j = 0; j < Z; ++j) {
      const size_t o = i * Z + j;
      const T s = std::exp(ls[o]);
      z[o] = mu[o] + s * eps[o];
      k += T(0.5) * (mu[o] * mu[o] + s * s - T(1) - T(2) * ls[o]);
      q += -T(0.5) * eps[o] * eps[o] - ls[o] - half_log_2pi;
      p += -T(0.5) * z[o] * z[o] - half_log_2pi;
    }
    kl[i] = k;
    logq[i] = q;
    logp[i] = p;
  }
};

// i < rows*Z: dmu += dz + dkl_row mu; dls += dz exp(ls) eps + dkl_row (exp(2 ls) - 1).
template <class T>
struct GaussianSampleBackward {
  int Z;
  const T *mu, *ls, *eps, *dz, *dkl;
  T *dmu, *dls;
  COUPLEVAE_HD void operator()(size_t o) const {
    const size_t i = o / Z;
    const T s = std::exp(ls[o]);
    const T g = dz ? dz[o] : T(0);
    dmu[o] += g + dkl[i] * mu[o];
    dls[o] += g * s * eps[o] + dkl[i] * (s * s - T(1));
  }
};

// ||x - y||^2 over D entries, in double (the coupling loss, the MMD kernel).
template <class T>
COUPLEVAE_HD inline double squared_distance(int D, const T* x, const T* y) {
  double d = 0;
  for (int k = 0; k < D; ++k) {
    const double e = double(x[k]) - double(y[k]);
    d += e * e;
  }
  return d;
}

// The scales of the coupling loss and of the IMQ kernel, by value (at most 8).
struct Scales {
  double c[8];
  int n;
};
inline Scales scales_of(const double* scales, int n_scales) {
  require(n_scales >= 0 && n_scales <= 8, "couplevae: a kernel takes at most 8 scales (got " +
                                              std::to_string(n_scales) + ")");
  Scales s{};
  s.n = n_scales;
  for (int i = 0; i < n_scales; ++i) s.c[i] = scales[i];
  return s;
}

// i < rows: coupling loss of one row (backend/cpu/ops.hpp coupling_forward).
template <class T>
struct CouplingForward {
  int D;
  const T *h, *hc;
  Scales s;
  bool rq;
  T* loss;
  COUPLEVAE_HD void operator()(size_t i) const {
    const double d = squared_distance(D, h + i * D, hc + i * D);
    double l = 0;
    if (rq)
      for (int j = 0; j < s.n; ++j) l -= s.c[j] / (s.c[j] + d);
    else
      l = d;
    loss[i] = T(l);
  }
};

// i < rows: dh_row += dloss_row * dloss/dd * 2 (h - hc).
template <class T>
struct CouplingBackward {
  int D;
  const T *h, *hc;
  Scales s;
  bool rq;
  const T* dloss;
  T* dh;
  COUPLEVAE_HD void operator()(size_t i) const {
    const double d = squared_distance(D, h + i * D, hc + i * D);
    double dd = 1;
    if (rq) {
      dd = 0;
      for (int j = 0; j < s.n; ++j) dd += s.c[j] / ((s.c[j] + d) * (s.c[j] + d));
    }
    const T g = T(2 * dd * double(dloss[i]));
    for (int k = 0; k < D; ++k) dh[i * D + k] += g * (h[i * D + k] - hc[i * D + k]);
  }
};

// Whether an update applies and the factor its gradients are scaled by first (clipping),
// kept in the backend's memory so that a training step decides it without the host
// (train/step_guard.hpp writes it, AdamTick reads it).
struct UpdateGate {
  double scale = 1;
  int apply = 1;
};

// The global-norm clipping factor of PyTorch's clip_grad_norm_: gradients of norm `norm`
// are scaled by min(1, max_norm / (norm + 1e-6)) (train/adam.hpp, train/step_guard.hpp).
COUPLEVAE_HD inline double clip_factor(double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1 ? coef : 1.0;
}

// Adam's numbers for the current update, in the backend's memory (train/adam.hpp): written
// by AdamTick, read by every element of the update.
struct AdamClock {
  long long t = 0;           // updates applied so far
  double step = 0;           // lr / (1 - b1^t)
  double inv_sqrt_c2 = 0;    // 1 / sqrt(1 - b2^t)
  double grad_scale = 1;     // the gradients' factor for this update
  int apply = 0;             // 0: this update is skipped (moments and values untouched)
};

// i < 1: decides the next update: skipped when gate->apply is 0, else t += 1 and the bias
// corrections c1 = 1 - b1^t, c2 = 1 - b2^t (PyTorch's formulation). gate may be null.
struct AdamTick {
  AdamClock* clock;
  const UpdateGate* gate;
  double lr, b1, b2;
  COUPLEVAE_HD void operator()(size_t) const {
    clock->apply = gate ? gate->apply : 1;
    clock->grad_scale = gate ? gate->scale : 1.0;
    if (!clock->apply) return;
    clock->t += 1;
    const double c1 = 1 - std::pow(b1, double(clock->t)), c2 = 1 - std::pow(b2, double(clock->t));
    clock->step = lr / c1;
    clock->inv_sqrt_c2 = 1.0 / std::sqrt(c2);
  }
};

// i < n: one Adam update (backend/cpu/ops.hpp adam) with the clock's numbers.
template <class T>
struct AdamStep {
  T *x;
  const T* g;
  T *m, *v;
  const AdamClock* clock;
  T b1, b2, eps;
  COUPLEVAE_HD void operator()(size_t i) const {
    if (!clock->apply) return;
    const T gi = g[i] * T(clock->grad_scale), step = T(clock->step), inv_sqrt_c2 = T(clock->inv_sqrt_c2);
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    x[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
  }
};

// i < n: mask[i] = [u_i >= p] / (1 - p), u_i element i of the draw at (seed, position).
template <class T>
struct DropoutMask {
  uint64_t seed, position;
  T p, keep;
  T* mask;
  COUPLEVAE_HD void operator()(size_t i) const {
    mask[i] = philox_uniform<T>(seed, position, i) >= p ? keep : T(0);
  }
};

// i < n: element i of a normal (or uniform) draw at (seed, position).
template <class T>
struct NormalDraw {
  uint64_t seed, position;
  T* out;
  COUPLEVAE_HD void operator()(size_t i) const { out[i] = philox_normal<T>(seed, position, i); }
};
// i < rows*cols: element (i / cols, i % cols) of a draw by row (core/rng.hpp RowNoise).
template <class T>
struct NormalRows {
  uint64_t key;
  const uint64_t* ids;
  int cols;
  T* out;
  COUPLEVAE_HD void operator()(size_t i) const {
    out[i] = row_noise_normal<T>(key, ids[i / size_t(cols)], i % size_t(cols));
  }
};
template <class T>
struct UniformDraw {
  uint64_t seed, position;
  T* out;
  COUPLEVAE_HD void operator()(size_t i) const { out[i] = philox_uniform<T>(seed, position, i); }
};

// i < rows*cols: y (cols, rows) = x^T.
template <class T>
struct Transpose {
  const T* x;
  int rows, cols;
  T* y;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t r = i / cols, c = i % cols;
    y[c * rows + r] = x[i];
  }
};

// i < rows*V: d logits = dloss_row (p - onehot(target_row)) in place over the probabilities;
// 0 on rows without a target (negative: padding).
template <class T>
struct SoftmaxXentBackward {
  T* probs;
  int V;
  const int32_t* targets;
  const T* dloss;
  COUPLEVAE_HD void operator()(size_t i) const {
    const size_t r = i / V;
    const int k = int(i % V);
    probs[i] = targets[r] < 0 ? T(0) : dloss[r] * (probs[i] - (k == targets[r] ? T(1) : T(0)));
  }
};

}  // namespace couplevae::kernels
