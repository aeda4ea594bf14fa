// couplevae/backend/recurrence.hpp: what a backend's own GRU kernels take, a step at a time
// (ops<B>::gru_step) or a whole pass (ops<B>::gru_pass); both optional, backend/cuda/recurrence.cuh has them. A backend
// without them composes each step (nn/gru.hpp). Every pointer is the backend's memory;
// shapes follow the Packing (core/batch.hpp) of the pass. rec_step and rec_back_step walk a
// pass, and a pass's step(s) gives a step's arguments, for nn::GRU's loops and the
// whole-pass kernels alike.
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

// One forward step over the a rows of a packed time step (a fused step kernel's arguments):
// the first ap continue from h_src (ap rows, H; null when ap = 0), the rest start from 0;
// in gx (a, 3H) with b_ih added, whh_t (H, 3H), bh (3H); out hp, r, z, n, ghn and the new
// states h_new (a, H); keep (a) for a padded Packing, null otherwise.
template <class T>
struct GruFwdStep {
  int a = 0, ap = 0, H = 0;
  const T *h_src = nullptr, *gx = nullptr, *whh_t = nullptr, *bh = nullptr;
  T *hp = nullptr, *r = nullptr, *z = nullptr, *n = nullptr, *ghn = nullptr, *h_new = nullptr;
  const int32_t* keep = nullptr;
  // Every field (a signature without the padding bytes, backend/cuda/graph.cuh).
  auto fields() const { return std::tuple(a, ap, H, h_src, gx, whh_t, bh, hp, r, z, n, ghn, h_new, keep); }
};

// One backward step over the a rows of a packed time step (rec_back_step): in/out dh
// (batch, H) gets the product dgh_next W_hh (dgh_next (pa, 3H), of the step that ran before
// it; W_hh (3H, H)) on its first pa rows, then the gates' backward from r, z, n, ghn, hp
// (a, H) and ds (a, ld_ds; may be null) give dgx, dgh (a, 3H) and leave the z path in dh;
// keep_next (pa) is that step's keep for a padded Packing (its padding rows have zero dgh).
template <class T>
struct GruBackStep {
  int a = 0, pa = 0, H = 0, ld_ds = 0;
  const T *dgh_next = nullptr, *w_hh = nullptr, *r = nullptr, *z = nullptr, *n = nullptr, *ghn = nullptr,
          *hp = nullptr, *ds = nullptr;
  T *dh = nullptr, *dgx = nullptr, *dgh = nullptr;
  const int32_t* keep_next = nullptr;
  auto fields() const { return std::tuple(a, pa, H, ld_ds, dgh_next, w_hh, r, z, n, ghn, hp, ds, dh, dgx, dgh, keep_next); }
};

// B's ops have fused steps of the recurrence, as ops<cuda> does: gru_step(step, second) ->
// bool (false: compose the step) for a GruFwdStep and for a GruBackStep, where second, when
// not null, is a step of another pass of the same H (BiGRU's two directions) to run in the
// same launch.
template <class B, class T>
concept has_gru_step = requires(const GruFwdStep<T>& f, const GruBackStep<T>& b) {
  ops<B>::gru_step(f, &f);
  ops<B>::gru_step(b, &b);
};

// A forward pass: in gx (rows, 3H) with b_ih added, whh_t (H, 3H), bh (3H); out states,
// hprev (each row's previous state), r, z, n, ghn (rows, H); keep (rows) for a padded
// Packing (rows with keep 0 carry the state, kernels::gru_carry), null otherwise. active
// and offset are the Packing's, in the memory of whoever walks the pass (step(s) reads them:
// the host's for nn::GRU's loop, the device's for a whole-pass kernel).
template <class T>
struct GruForwardPass {
  static constexpr bool forward = true;  // walked s = 0, 1, ..
  int steps = 0, batch = 0, H = 0;
  bool reverse = false;
  const int32_t *active = nullptr, *offset = nullptr;
  const T *gx = nullptr, *whh_t = nullptr, *bh = nullptr;
  T *states = nullptr, *hprev = nullptr, *r = nullptr, *z = nullptr, *n = nullptr, *ghn = nullptr;
  const int32_t* keep = nullptr;
  // Every field (a signature without the padding bytes, backend/cuda/graph.cuh).
  auto fields() const {
    return std::tuple(steps, batch, H, reverse, active, offset, gx, whh_t, bh, states, hprev, r, z, n, ghn, keep);
  }
  // Step s of the pass (rec_step).
  COUPLEVAE_HD GruFwdStep<T> step(int s) const {
    const RecStep st = rec_step(s, steps, reverse, active);
    const size_t row = size_t(offset[st.t]), o = row * H;
    return GruFwdStep<T>{.a = st.a, .ap = st.ap, .H = H,
                         .h_src = st.ap ? states + size_t(offset[st.tp]) * H : nullptr, .gx = gx + 3 * o,
                         .whh_t = whh_t, .bh = bh, .hp = hprev + o, .r = r + o, .z = z + o, .n = n + o,
                         .ghn = ghn + o, .h_new = states + o, .keep = keep ? keep + row : nullptr};
  }
};

// A backward pass: in r, z, n, ghn, hprev (rows, H) from the forward pass, W_hh (3H, H), ds
// (rows, ld_ds; the gradient on every state from outside, may be null); dh (batch, H): in
// the gradient on each sequence's final state, scratch afterwards; out dgx, dgh
// (rows, 3H); keep as in the forward pass (padding rows have zero dgh: a whole-pass kernel
// may skip their product); active and offset as there.
template <class T>
struct GruBackwardPass {
  static constexpr bool forward = false;  // walked s = steps - 1, ..
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
  // Step s of the pass (rec_back_step; s runs from steps - 1 down to 0).
  COUPLEVAE_HD GruBackStep<T> step(int s) const {
    const RecBackStep bs = rec_back_step(s, steps, reverse, active);
    const size_t row = size_t(offset[bs.t]), next = size_t(offset[bs.tn]), o = row * H, G = 3 * size_t(H);
    return GruBackStep<T>{.a = bs.a, .pa = bs.pa, .H = H, .ld_ds = ld_ds, .dgh_next = dgh + next * G, .w_hh = w_hh,
                          .r = r + o, .z = z + o, .n = n + o, .ghn = ghn + o, .hp = hprev + o,
                          .ds = ds ? ds + row * size_t(ld_ds) : nullptr, .dh = dh, .dgx = dgx + row * G,
                          .dgh = dgh + row * G, .keep_next = keep ? keep + next : nullptr};
  }
};

// The index s of a pass's k-th step in the order it runs: forward s = k, backward
// s = steps - 1 - k (nn::GRU's loop and the whole-pass kernels alike).
template <class Pass>
COUPLEVAE_HD inline int nth_step(const Pass& p, int k) {
  return Pass::forward ? k : p.steps - 1 - k;
}

// B's ops have whole-pass kernels: gru_whole_pass() -> bool (whether to use them now), and
// gru_pass(pass, second) -> bool (false: declined) for a GruForwardPass and for a
// GruBackwardPass, where second, when not null, is a pass of another GRU of the same H over
// the same Packing to run in the same kernel.
template <class B, class T>
concept has_gru_pass = requires(const GruForwardPass<T>& f, const GruBackwardPass<T>& b) {
  ops<B>::gru_whole_pass();
  ops<B>::gru_pass(f, &f);
  ops<B>::gru_pass(b, &b);
};

}  // namespace couplevae
