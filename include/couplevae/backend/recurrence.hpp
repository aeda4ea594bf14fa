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

// Step s of a backward pass, which runs the steps in the opposite order: its packed time step
// t and rows a, and the step tn that ran just before it (s + 1 in the recurrence's order),
// whose product dgh W_hh goes to the pa rows that ran at both (that step's ap; 0 when s is
// the recurrence's last step, which backward runs first). The product of the first step (s = 0) would be the gradient on the zero
// initial state, which nothing reads, so it is never formed.
struct RecBackStep {
  int t, a, tn, pa;
};
COUPLEVAE_HD inline RecBackStep rec_back_step(int s, int steps, bool reverse, const int32_t* active) {
  const RecStep st = rec_step(s, steps, reverse, active);
  RecBackStep b{st.t, st.a, st.t, 0};
  if (s + 1 < steps) {
    const RecStep nx = rec_step(s + 1, steps, reverse, active);
    b.tn = nx.t;
    b.pa = nx.ap;
  }
  return b;
}

// B's ops have fused steps of the recurrence, as ops<cuda> does (false: compose the step):
//   gru_step_forward(a, ap, H, h_src, gx, whh_t, bh, hp, r, z, n, ghn, h_new, keep) -> bool,
//   gru_step_backward(a, pa, H, dgh_next, w_hh, r, z, n, ghn, hp, ds, ld_ds, dh, dgx, dgh,
//                     keep_next) -> bool (rec_back_step's pa and the step tn's dgh and keep).
template <class B, class T>
concept has_gru_step = requires(T* p, const int32_t* k) {
  ops<B>::gru_step_forward(0, 0, 0, p, p, p, p, p, p, p, p, p, p, k);
  ops<B>::gru_step_backward(0, 0, 0, p, p, p, p, p, p, p, p, 0, p, p, p, k);
};

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
// (rows, ld_ds; the gradient on every state from outside, may be null); dh (batch, H): in
// the gradient on each sequence's final state, scratch afterwards; out dgx, dgh
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
