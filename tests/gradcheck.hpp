// tests/gradcheck.hpp: finite-difference gradient checks (double precision).
//
// A check compares analytic gradients with central differences (L(x+h) - L(x-h)) / 2h at
// several step sizes h, taking the step that agrees best (truncation error falls with h,
// rounding error grows). Gradient buffers are pre-filled with random values before the
// analytic backward pass and the pre-fill is subtracted afterwards, so a backward that
// overwrites instead of accumulating fails the check.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <couplevae/core/arena.hpp>
#include <couplevae/core/batch.hpp>
#include <couplevae/core/context.hpp>
#include <couplevae/config.hpp>

namespace gradcheck {

// Random inputs, projections and parameter look-ups for the checks.
inline std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::vector<double> v(n);
  couplevae::Rng(seed).normal(v.data(), n);
  for (double& x : v) x *= scale;
  return v;
}
// sum_i a[i] w[i]: a scalar loss from a tensor, with random weights w.
inline double dot(const double* a, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += a[i] * w[i];
  return s;
}
// The values of the arena's tensor `name`, or nullptr.
inline double* find_param(couplevae::Arena<double>& ar, const std::string& name) {
  double* p = nullptr;
  ar.visit([&](const couplevae::ParamInfo& info, double* v, double*) {
    if (info.name == name) p = v;
  });
  return p;
}
inline double* param(couplevae::Arena<double>& ar, const std::string& name) {
  double* p = find_param(ar, name);
  REQUIRE_MESSAGE(p != nullptr, "no parameter " << name);
  return p;
}

struct Probe {
  std::string name;
  double* value;              // the variable, perturbed in place
  std::vector<double> grad;   // analytic gradient (pre-fill removed)
};

struct Options {
  int per_tensor = 12;   // elements checked per tensor (spread evenly, plus the first/last)
  double rtol = 2e-5;
  double atol = 1e-8;
};

inline std::vector<size_t> sample_indices(size_t n, int k) {
  std::vector<size_t> idx;
  if (n == 0) return idx;
  if (n <= size_t(k)) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  for (int j = 0; j < k; ++j) idx.push_back(size_t((double(j) * 7919.0 + 0.5 * j * j)) % n);
  idx.push_back(n - 1);
  return idx;
}

// Checks every probe against central differences of loss(). Returns the number of checked
// entries; each mismatch is a doctest failure naming the tensor and index.
inline int check(std::vector<Probe>& probes, const std::function<double()>& loss, Options o = {}) {
  int checked = 0;
  const double steps[] = {1e-3, 1e-4, 1e-5, 1e-6};
  for (auto& p : probes) {
    for (size_t i : sample_indices(p.grad.size(), o.per_tensor)) {
      const double x0 = p.value[i];
      double best = 1e300, best_num = 0;
      const double a = p.grad[i];
      for (double h : steps) {
        p.value[i] = x0 + h;
        const double lp = loss();
        p.value[i] = x0 - h;
        const double lm = loss();
        p.value[i] = x0;
        const double num = (lp - lm) / (2 * h);
        const double err = std::abs(num - a);
        if (err < best) best = err, best_num = num;
      }
      const double tol = o.atol + o.rtol * std::max(std::abs(a), std::abs(best_num));
      if (!(best <= tol)) {
        FAIL_CHECK(p.name << "[" << i << "]: analytic " << a << " vs numeric " << best_num
                          << " (|diff| " << best << " > " << tol << ")");
      }
      ++checked;
    }
  }
  return checked;
}

// Probes for every tensor of an arena. `backward` must run forward + backward, accumulating
// into the arena's gradients; the gradients are pre-filled with noise first.
template <class B>
std::vector<Probe> arena_probes(couplevae::Arena<double, B>& ar, const std::function<void()>& backward,
                                uint64_t seed = 99) {
  couplevae::Rng rng(seed);
  std::vector<double> pre(ar.total());
  rng.normal(pre.data(), pre.size());
  std::copy(pre.begin(), pre.end(), ar.grads().data());
  backward();
  std::vector<Probe> probes;
  ar.visit([&](const couplevae::ParamInfo& info, double* v, double* g) {
    if (!info.trainable) return;
    Probe p{info.name, v, std::vector<double>(info.size)};
    for (size_t k = 0; k < info.size; ++k) p.grad[k] = g[k] - pre[info.offset + k];
    probes.push_back(std::move(p));
  });
  return probes;
}

// Whole-model check: forward (training mode, the noise replayed from the same generator
// position every call) and backward of `loss`; a Coupled model holds h^c constant, as its
// objective detaches it. Returns the number of entries checked.
template <class M>
int check_model(M& model, const couplevae::Batch& b, long step, int per_tensor) {
  couplevae::Context<> ctx(123, true);
  auto loss = [&] {
    ctx.rng.position = 0;
    return model.forward(ctx, b, step).loss;
  };
  auto probes = arena_probes(model.arena(), [&] {
    loss();
    model.backward(ctx);
  });
  if constexpr (M::is_coupled) model.freeze_coupling_target(true);
  Options o;
  o.per_tensor = per_tensor;
  return check(probes, loss, o);
}

// The whole-model checks' sizes: vocabulary 13, embedding 4, encoder 3, latent 2, MLP 5,
// the KL weight ramped over 10 steps (0.5 at step 5), and a batch of four sentences.
inline couplevae::Config tiny_model_config() {
  couplevae::Config c = couplevae::Config::preset("ptb");
  c.vocab_size = 13;
  c.embed = 4;
  c.hidden = 3;
  c.latent = 2;
  c.mlp_hidden = 5;
  c.kl_start = 0;
  c.kl_anneal_steps = 10;
  return c;
}
inline couplevae::Batch tiny_model_batch(int V) {
  return couplevae::make_batch({{4, 5, 6}, {7, 3}, {8, 9, 10, 11, 12}, {5}}, V);
}
// check_model over `per_tensor` entries of every tensor, which must come to more than `at_least`.
template <class M>
void check_model_gradients(M& model, const couplevae::Batch& b, long step, int per_tensor = 6, int at_least = 100) {
  CHECK(check_model(model, b, step, per_tensor) > at_least);
}

}  // namespace gradcheck
