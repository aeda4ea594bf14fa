// couplevae/nn/gru.hpp: GRU over packed variable-length sequences, one direction or both.
//
// PyTorch's cell (gate order r, z, n):
//   r_t = s(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
//   z_t = s(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
//   n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
//   h_t = (1 - z_t) * n_t + z_t * h_{t-1},   h_{-1} = 0
// Shapes: X (rows, I) and states (rows, H) in the Packing's time-major layout
// (core/batch.hpp); W_ih (3H, I), W_hh (3H, H), b_ih, b_hh (3H); h_final (batch, H) is each
// sequence's last state. A reverse GRU runs each sequence from its own last token back to
// the first, so its final state is the one at t = 0. On a padded Packing (a bucketed batch,
// core/batch.hpp) every row runs, and the padding rows carry the state unchanged
// (kernels::gru_carry): a forward GRU's state at the last step is then each sequence's
// final one, a reverse GRU reaches each sequence's last token from the zero state, and
// backward passes gradients through the padding untouched with zero gate gradients.
// The input projection X W_ih^T for all rows is one GEMM outside the recurrence (on a padded
// Packing over its real rows only, Packing::real_rows: gathered, projected, and spread back
// to the rectangle; likewise the weight-gradient and dX GEMMs of backward); each step
// does one (active, H) x (H, 3H) product over the rows still running (ops::gemm_few_rows,
// against a transposed copy of W_hh made once per pass) and one gate kernel that adds b_hh
// (and, backward, the outside gradient dstates) itself; a backward step first adds the
// product of the step that ran before it (rec_back_step, backend/recurrence.hpp), so the
// first step's, the gradient on the zero initial state, is never formed. A backend whose
// ops have gru_step (cuda) does each step, forward (the previous-state copy, the product
// and the gates) and backward (the product and the gates), in one kernel instead, and the
// steps s of two passes over the same Packing (BiGRU's directions, Coupled's decoders:
// run_steps) in the same launch; one whose ops have gru_pass (backend/recurrence.hpp; cuda,
// when its runtime's persistent_recurrence is on) runs the whole recurrence of a pass, or
// of two, in one launch, and the loops below only when it declines. The forward pass keeps
// every row's previous state h_{t-1}, so backward runs only dh_{t-1} = dgh_t W_hh inside
// the recurrence and forms the weight gradients after it, each as one GEMM over all rows:
//   dW_hh += dGH^T H_prev,  db_hh += colsum(dGH),  dW_ih += dGX^T X,  db_ih += colsum(dGX).
// backward accumulates into the four parameters and (when given) dX; dstates (gradient on
// every step's state) and dh_final are both optional.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "../backend/recurrence.hpp"
#include "../core/arena.hpp"
#include "../core/batch.hpp"
#include "../core/context.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct GRU {
  Param W_ih, W_hh, b_ih, b_hh;
  int in = 0, H = 0;
  bool reverse = false;

  struct Cache {
    Buffer<T, B> gx, r, z, n, ghn, states, h_final, hprev;  // forward results (hprev: h_{t-1} per row)
    Buffer<T, B> whh_t;                                     // W_hh^T (H, 3H) for the forward steps
    Buffer<T, B> gh, dgx, dgh, dh;                          // scratch
    std::vector<int32_t> last_row;                   // row of each sequence's last step
    Buffer<int32_t, B> last_row_b;
    Buffer<int32_t, B> active_b, offset_b;  // the Packing, for whole-pass kernels
    const int32_t *active = nullptr, *offset = nullptr;
    Buffer<int32_t, B> keep_b;              // Packing::keep of a padded Packing
    const int32_t* keep = nullptr;
    // A padded Packing's real rows (Compact): fillers to row 0 (from_row0) or to the extra
    // zero row `rows` of dgx / dgh (from_zero_row), and each row's compact index (to_compact).
    Buffer<T, B> xc, gxc, dgxc, dghc, hpc, dxc;
    std::vector<int32_t> from_row0_h, from_zero_row_h, to_compact_h;  // (on cpu, what the pointers read)
    Buffer<int32_t, B> from_row0_b, from_zero_row_b, to_compact_b;
    const int32_t *from_row0 = nullptr, *from_zero_row = nullptr, *to_compact = nullptr;
    int compact = 0;
  };

  GRU() = default;
  GRU(Arena<T, B>& ar, const std::string& name, int input, int hidden, bool reversed = false)
      : in(input), H(hidden), reverse(reversed) {
    const std::string sfx = reversed ? "_l0_reverse" : "_l0";
    const Init init = Init::fan_in(hidden);
    W_ih = ar.add(name + ".weight_ih" + sfx, {3 * H, in}, init);
    W_hh = ar.add(name + ".weight_hh" + sfx, {3 * H, H}, init);
    b_ih = ar.add(name + ".bias_ih" + sfx, {3 * H}, init);
    b_hh = ar.add(name + ".bias_hh" + sfx, {3 * H}, init);
  }

  // Fills c.states (rows, H) and c.h_final (batch, H).
  void forward(Context<B>&, Arena<T, B>& ar, View<T> X, const Packing& pk, Cache& c) const {
    const GruForwardPass<T> p = forward_begin(ar, X, pk, c);
    Cache* cs[] = {&c};
    run_steps(pk, &p, cs, 1);
    forward_end(pk, c);
  }

  void backward(Context<B>&, Arena<T, B>& ar, View<T> X, const Packing& pk, View<T> dstates,
                View<T> dh_final, View<T> dX, Cache& c) const {
    const GruBackwardPass<T> p = backward_begin(ar, pk, dstates, dh_final, c);
    Cache* cs[] = {&c};
    run_steps(pk, &p, cs, 1);
    backward_end(ar, X, pk, dX, c);
  }

  // forward and backward in parts, so that BiGRU runs its two directions' steps side by
  // side: forward_begin projects the input and returns the pass (the Packing's indices in
  // host memory), run_steps runs the recurrence, forward_end gathers h_final. Likewise
  // backward: backward_begin (dh = dh_final), run_steps, backward_end (the weight gradients
  // and dX).
  GruForwardPass<T> forward_begin(Arena<T, B>& ar, View<T> X, const Packing& pk, Cache& c) const {
    const int G = 3 * H;
    View<T> gx = c.gx.shape(pk.rows, G);
    c.compact = pk.padded ? int(pk.real_rows.size()) : 0;
    if (c.compact) {  // the projection of the real rows, spread back to the rectangle
      upload_compact(pk, c);
      View<T> xc = c.xc.shape(c.compact, X.cols), gxc = c.gxc.shape(c.compact, G);
      ops<B>::gather_rows(X.data, X.cols, c.from_row0, c.compact, xc.data, X.cols);
      project(ar, xc, gxc);
      ops<B>::gather_rows(gxc.data, G, c.to_compact, pk.rows, gx.data, G);  // padding rows: unread
    } else {
      project(ar, X, gx);
    }
    c.gh.shape(pk.batch, G);
    View<T> whh_t = c.whh_t.shape(H, G);
    ops<B>::transpose(ar.value(W_hh), G, H, whh_t.data);
    c.active = c.offset = nullptr;
    c.keep = pk.padded ? backend_ids(pk.keep, c.keep_b) : nullptr;
    return GruForwardPass<T>{pk.steps, pk.batch, H, reverse, pk.active.data(), pk.offset.data(), gx.data, whh_t.data,
                             ar.value(b_hh), c.states.shape(pk.rows, H).data, c.hprev.shape(pk.rows, H).data,
                             c.r.shape(pk.rows, H).data, c.z.shape(pk.rows, H).data, c.n.shape(pk.rows, H).data,
                             c.ghn.shape(pk.rows, H).data, c.keep};
  }
  void forward_end(const Packing& pk, Cache& c) const {
    c.last_row.assign(pk.batch, 0);
    if (!reverse)
      for (int t = 0; t < pk.steps; ++t)
        for (int b = 0; b < pk.active[t]; ++b) c.last_row[b] = pk.row(t, b);
    else
      for (int b = 0; b < pk.batch; ++b) c.last_row[b] = pk.row(0, b);
    View<T> hf = c.h_final.shape(pk.batch, H);
    ops<B>::gather_rows(c.states.data(), H, backend_ids(c.last_row, c.last_row_b), pk.batch, hf.data, H);
  }

  GruBackwardPass<T> backward_begin(Arena<T, B>& ar, const Packing& pk, View<T> dstates, View<T> dh_final,
                                    Cache& c) const {
    const int G = 3 * H;
    // a padded Packing's gathers read the fillers from an extra zero row of dgx and dgh
    const int extra = c.compact ? 1 : 0;
    View<T> dgx = c.dgx.shape(pk.rows + extra, G), dgh = c.dgh.shape(pk.rows + extra, G);
    View<T> dh = c.dh.zeros(pk.batch, H);
    if (dh_final) ops<B>::copy2d(dh_final.data, pk.batch, H, dh_final.cols, dh.data, H);
    if (extra) {
      ops<B>::fill(dgx.row(pk.rows), size_t(G), T(0));
      ops<B>::fill(dgh.row(pk.rows), size_t(G), T(0));
    }
    return GruBackwardPass<T>{pk.steps, pk.batch, H, reverse, pk.active.data(), pk.offset.data(), c.r.data(),
                              c.z.data(), c.n.data(), c.ghn.data(), c.hprev.data(), ar.value(W_hh),
                              dstates ? dstates.data : nullptr, dstates.cols, dh.data, dgx.data, dgh.data, c.keep};
  }
  // The recurrence of n (1 or 2) passes (GruForwardPass or GruBackwardPass) over the same
  // Packing: in one whole-pass kernel when the backend runs them, else step by step
  // (forward s = 0.., backward s = steps-1..), the passes' steps s in one launch where the
  // backend fuses steps.
  template <class Pass>
  static void run_steps(const Packing& pk, const Pass* p, Cache* const* c, int n) {
    if (whole_passes(pk, p, c, n)) return;
    for (int k = 0; k < pk.steps; ++k) {
      const int s = nth_step(p[0], k);
      decltype(p->step(0)) st[2];
      for (int i = 0; i < n; ++i) st[i] = p[i].step(s);
      if constexpr (has_gru_step<B, T>) {
        if (ops<B>::gru_step(st[0], n == 2 ? &st[1] : nullptr)) continue;
      }
      for (int i = 0; i < n; ++i) composed_step(st[i], *c[i]);
    }
  }
  void backward_end(Arena<T, B>& ar, View<T> X, const Packing& pk, View<T> dX, Cache& c) const {
    const int G = 3 * H;
    View<T> hp_all{c.hprev.data(), pk.rows, H}, dgx{c.dgx.data(), pk.rows, G}, dgh{c.dgh.data(), pk.rows, G};
    if (!c.compact) {
      weight_gradients(ar, dgh, hp_all, dgx, X, dX);
      return;
    }
    // The real rows only: padding rows have zero gate gradients, fillers read the zero row.
    const int m = c.compact;
    View<T> dghc = c.dghc.shape(m, G), hpc = c.hpc.shape(m, H), dgxc = c.dgxc.shape(m, G);
    ops<B>::gather_rows(dgh.data, G, c.from_zero_row, m, dghc.data, G);
    ops<B>::gather_rows(hp_all.data, H, c.from_row0, m, hpc.data, H);
    ops<B>::gather_rows(dgx.data, G, c.from_zero_row, m, dgxc.data, G);
    View<T> dxc = dX ? c.dxc.zeros(m, X.cols) : View<T>{};
    weight_gradients(ar, dghc, hpc, dgxc, View<T>{c.xc.data(), m, X.cols}, dxc);
    if (dX) ops<B>::scatter_add_rows(dxc.data, X.cols, c.from_row0, m, X.cols, dX.data);  // fillers add 0
  }

  // One step for X.rows rows from given states (decoding): h_new = cell(X, h_prev). Uses
  // c's buffers as scratch; no backward.
  void step(Context<B>&, Arena<T, B>& ar, View<T> X, View<T> h_prev, View<T> h_new, Cache& c) const {
    const int G = 3 * H, a = X.rows;
    View<T> gx = c.gx.shape(a, G), gh = c.gh.shape(a, G);
    project(ar, X, gx);
    ops<B>::gemm(false, true, a, G, H, T(1), h_prev.data, h_prev.cols, ar.value(W_hh), H, T(0), gh.data, G);
    ops<B>::gru_gates_forward(a, H, gx.data, gh.data, ar.value(b_hh), h_prev.data, c.r.shape(a, H).data,
                              c.z.shape(a, H).data, c.n.shape(a, H).data, c.ghn.shape(a, H).data, h_new.data);
  }

 private:
  // gx = X W_ih^T + b_ih over X's rows.
  void project(Arena<T, B>& ar, View<T> X, View<T> gx) const {
    ops<B>::gemm(false, true, X.rows, gx.cols, in, T(1), X.data, X.cols, ar.value(W_ih), in, T(0), gx.data, gx.cols);
    ops<B>::add_row_bias(gx.data, X.rows, gx.cols, ar.value(b_ih));
  }
  // The weight gradients from the rows given, and dX += dGX W_ih when dX is given.
  void weight_gradients(Arena<T, B>& ar, View<T> dgh, View<T> hp, View<T> dgx, View<T> X, View<T> dX) const {
    const int G = 3 * H;
    ops<B>::gemm(true, false, G, H, dgh.rows, T(1), dgh.data, G, hp.data, H, T(1), ar.grad(W_hh), H);
    ops<B>::col_sum_acc(dgh.data, dgh.rows, G, ar.grad(b_hh));
    ops<B>::gemm(true, false, G, in, dgx.rows, T(1), dgx.data, G, X.data, X.cols, T(1), ar.grad(W_ih), in);
    ops<B>::col_sum_acc(dgx.data, dgx.rows, G, ar.grad(b_ih));
    if (dX) ops<B>::gemm(false, false, dgx.rows, in, G, T(1), dgx.data, G, ar.value(W_ih), in, T(1), dX.data, dX.cols);
  }
  // The three index arrays of a padded Packing's real rows (see Cache).
  static void upload_compact(const Packing& pk, Cache& c) {
    const int m = int(pk.real_rows.size());
    c.from_row0_h.resize(size_t(m));
    c.from_zero_row_h.resize(size_t(m));
    c.to_compact_h.assign(size_t(pk.rows), 0);
    for (int k = 0; k < m; ++k) {
      const int32_t r = pk.real_rows[k];
      c.from_row0_h[k] = std::max(r, 0);
      c.from_zero_row_h[k] = r < 0 ? pk.rows : r;
      if (r >= 0) c.to_compact_h[r] = k;
    }
    c.from_row0 = backend_ids(c.from_row0_h, c.from_row0_b);
    c.from_zero_row = backend_ids(c.from_zero_row_h, c.from_zero_row_b);
    c.to_compact = backend_ids(c.to_compact_h, c.to_compact_b);
  }
  // A forward step composed (ops::gemm_few_rows and the gate kernel), c.gh its scratch:
  // hp = the states each sequence running at the step had before it (0 at its start).
  static void composed_step(const GruFwdStep<T>& f, Cache& c) {
    const int a = f.a, ap = f.ap, H = f.H, G = 3 * H;
    if (ap > 0) ops<B>::copy(f.h_src, size_t(ap) * H, f.hp);
    if (a > ap) ops<B>::fill(f.hp + size_t(ap) * H, size_t(a - ap) * H, T(0));
    ops<B>::gemm_few_rows(a, G, H, f.hp, H, f.whh_t, G, c.gh.data(), G, /*accumulate=*/false);
    ops<B>::gru_gates_forward(a, H, f.gx, c.gh.data(), f.bh, f.hp, f.r, f.z, f.n, f.ghn, f.h_new, f.keep);
  }
  // A backward step composed: the product of the step before it, then the gate kernel.
  static void composed_step(const GruBackStep<T>& b, Cache&) {
    const int H = b.H, G = 3 * H;
    ops<B>::gemm_few_rows(b.pa, H, G, b.dgh_next, G, b.w_hh, H, b.dh, H, /*accumulate=*/true);
    ops<B>::gru_gates_backward(b.a, H, b.r, b.z, b.n, b.ghn, b.hp, b.ds, b.ld_ds, b.dh, b.dgx, b.dgh);
  }
  // The n passes p by a whole-pass kernel (both in one when n = 2), when the backend has one
  // and runs it now (the forward pass uploads the Packing's indices, which the backward pass
  // then finds in c); false otherwise, and then none ran.
  template <class Pass>
  static bool whole_passes(const Packing& pk, const Pass* p, Cache* const* c, int n) {
    if constexpr (has_gru_pass<B, T>) {
      if (!ops<B>::gru_whole_pass()) return false;
      Pass q[2];
      for (int i = 0; i < n; ++i) {
        if constexpr (Pass::forward) {
          c[i]->active = backend_ids(pk.active, c[i]->active_b);
          c[i]->offset = backend_ids(pk.offset, c[i]->offset_b);
        } else if (!c[i]->active) {
          return false;
        }
        q[i] = p[i];
        q[i].active = c[i]->active, q[i].offset = c[i]->offset;
      }
      return ops<B>::gru_pass(q[0], n == 2 ? &q[1] : nullptr);
    } else {
      (void)pk, (void)p, (void)c, (void)n;
      return false;
    }
  }
};

// Bidirectional GRU encoder: e = [h_fwd_final ; h_bwd_final], shape (batch, 2H)
// (reference.md §2). The directions share the Packing, so their steps s run side by side.
template <class T, class B = cpu>
struct BiGRU {
  GRU<T, B> fwd, bwd;
  struct Cache {
    typename GRU<T, B>::Cache f, b;
  };

  BiGRU() = default;
  BiGRU(Arena<T, B>& ar, const std::string& name, int input, int hidden)
      : fwd(ar, name, input, hidden, false), bwd(ar, name, input, hidden, true) {}

  int hidden() const { return fwd.H; }

  // The two directions' steps run side by side (GRU::run_steps).
  void forward(Context<B>&, Arena<T, B>& ar, View<T> X, const Packing& pk, View<T> e, Cache& c) const {
    const int H = fwd.H;
    const GruForwardPass<T> p[] = {fwd.forward_begin(ar, X, pk, c.f), bwd.forward_begin(ar, X, pk, c.b)};
    typename GRU<T, B>::Cache* cs[] = {&c.f, &c.b};
    GRU<T, B>::run_steps(pk, p, cs, 2);
    fwd.forward_end(pk, c.f);
    bwd.forward_end(pk, c.b);
    ops<B>::copy2d(c.f.h_final.data(), pk.batch, H, H, e.data, e.cols);
    ops<B>::copy2d(c.b.h_final.data(), pk.batch, H, H, e.data + H, e.cols);
  }
  void backward(Context<B>&, Arena<T, B>& ar, View<T> X, const Packing& pk, View<T> de, View<T> dX, Cache& c) const {
    const int H = fwd.H;
    const GruBackwardPass<T> p[] = {
        fwd.backward_begin(ar, pk, View<T>{}, View<T>{de.data, pk.batch, de.cols}, c.f),
        bwd.backward_begin(ar, pk, View<T>{}, View<T>{de.data + H, pk.batch, de.cols}, c.b)};
    typename GRU<T, B>::Cache* cs[] = {&c.f, &c.b};
    GRU<T, B>::run_steps(pk, p, cs, 2);
    fwd.backward_end(ar, X, pk, dX, c.f);
    bwd.backward_end(ar, X, pk, dX, c.b);
  }
};

}  // namespace couplevae::nn
