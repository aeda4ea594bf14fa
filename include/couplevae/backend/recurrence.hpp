// couplevae/backend/recurrence.hpp: what a backend's whole-pass GRU kernels take
// (ops<B>::gru_forward_pass / gru_backward_pass, optional; backend/cuda/recurrence.cuh has
// them). A backend without them runs the recurrence step by step (nn/gru.hpp). Every
// pointer is the backend's memory; shapes follow the Packing (core/batch.hpp) of the pass.
#pragma once
#include <tuple>
#include <cstdint>

#include "../core/hd.hpp"
#include "tags.hpp"

namespace couplevae {

// Step s of a pass in the recurrence's order (s = 0 runs first): the packed time step t, its
// rows a, the step tp before it in this direction, and ap, how many of t's rows ran at tp
// (0 at a sequence's start). active is the Packing's active[], in host or device memory;
// nn::GRU's loops and the persistent kernels both walk a pass with it.
struct RecStep {
  int t, a, tp, ap;
};
COUPLEVAE_HD inline RecStep rec_step(int s, int steps, bool reverse, const int32_t* active) {
  RecStep r;
  r.t = reverse ? steps - 1 - s : s;
  r.a = active[r.t];
  r.tp = reverse ? r.t + 1 : r.t - 1;
  r.ap = 0;
  if (r.tp >= 0 && r.tp < steps) r.ap = active[r.tp] < r.a ? active[r.tp] : r.a;
  return r;
}

// B's ops have a fused forward step of the recurrence, gru_step_forward(a, ap, H, h_src, gx,
// whh_t, bh, hp, r, z, n, ghn, h_new) -> bool (false: compose it), as ops<cuda> does.
template <class B, class T>
concept has_gru_step = requires(T* p) { ops<B>::gru_step_forward(0, 0, 0, p, p, p, p, p, p, p, p, p, p); };

// B's ops have whole-pass kernels: gru_whole_pass() -> bool (whether to use them now), and
// gru_forward_pass / gru_backward_pass taking the structs below -> bool (false: declined).
template <class B>
concept has_gru_pass = requires { ops<B>::gru_whole_pass(); };

// A forward pass: in gx (rows, 3H) with b_ih added, whh_t (H, 3H), bh (3H); out states,
// hprev (each row's previous state), r, z, n, ghn (rows, H); keep (rows) for a padded
// Packing (rows with keep 0 carry the state, kernels::gru_carry), null otherwise.
template <class T>
struct GruForwardPass {
  int steps = 0, batch = 0, H = 0;
  bool reverse = false;
  const int32_t *active = nullptr, *offset = nullptr;  // the Packing's, in the backend's memory
  const T *gx = nullptr, *whh_t = nullptr, *bh = nullptr;
  T *states = nullptr, *hprev = nullptr, *r = nullptr, *z = nullptr, *n = nullptr, *ghn = nullptr;
  const int32_t* keep = nullptr;
  // Every field (a signature without the padding bytes, backend/cuda/graph.cuh).
  auto fields() const {
    return std::tuple(steps, batch, H, reverse, active, offset, gx, whh_t, bh, states, hprev, r, z, n, ghn, keep);
  }
};

// A backward pass: in r, z, n, ghn, hprev (rows, H) from the forward pass, W_hh (3H, H), ds
// (rows, ld_ds; the gradient on every state from outside, may be null); in/out dh (batch, H):
// in the gradient on each sequence's final state, out on its initial one; out dgx, dgh
// (rows, 3H); keep as in the forward pass (padding rows have zero dgh: a whole-pass kernel
// may skip their product).
template <class T>
struct GruBackwardPass {
  int steps = 0, batch = 0, H = 0;
  bool reverse = false;
  const int32_t *active = nullptr, *offset = nullptr;
  const T *r = nullptr, *z = nullptr, *n = nullptr, *ghn = nullptr, *hprev = nullptr, *w_hh = nullptr, *ds = nullptr;
  int ld_ds = 0;
  T *dh = nullptr, *dgx = nullptr, *dgh = nullptr;
  const int32_t* keep = nullptr;
  auto fields() const {
    return std::tuple(steps, batch, H, reverse, active, offset, r, z, n, ghn, hprev, w_hh, ds, ld_ds, dh, dgx, dgh,
                      keep);
  }
};

}  // namespace couplevae
