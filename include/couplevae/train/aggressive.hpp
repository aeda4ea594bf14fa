// couplevae/train/aggressive.hpp: aggressive inference-network training, the Lagging-VAE of
// He et al. 2019 (reference.md §10), for any model with a stochastic posterior (and its
// Coupled twin: "lagging-vae", "couple-lagging-vae", or --aggressive on any latent model).
//
// The parameters split into two groups with an Adam each (train/adam.hpp, ParamGroup):
//   inference network phi = the encoder and the posterior heads ("encoder.*", "posterior.*")
//   generative model theta = everything else (the shared embedding, the MLP, the decoder and,
//                           for a Coupled model, its deterministic head, MLP^c and decoder^c)
// While the phase is on, every training step t on batch x_t is (aggressive_step):
//   inner loop, k = 1 .. aggressive_inner (99):
//     loss on x (x = x_t first, then a batch from the loop's own shuffled stream);
//     backward; clip the whole gradient (30); update phi only
//     every aggressive_window (15) updates: stop when the per-token loss summed over the
//     window did not fall below the previous window's (BurnMonitor)
//   then the loss on x_t; backward; clip; update theta only (phi's gradient is dropped).
// At the end of every epoch of the main batches (AggressiveSchedule) the MI of the validation
// sentences is measured (eval/mi.hpp, 10 samples, batches of 513, self term excluded); the
// phase ends the first time it is lower than at the previous epoch's end, and from then on a
// step updates both groups as in plain training. The loss is the model's whole objective
// (for Coupled models L_rec^c and the coupling term too: the encoder is shared).
//
// Differences from He et al. (who used LSTMs, SGD with lr 1 and clipping at 5): this uses the
// paper's common setup (Adam, clip 30, batch 32, our annealing) so that Lagging-VAE and
// Couple-Lagging-VAE compare with the other rows of the tables; the embedding is shared by
// encoder and decoder here and counts as theta, so the inner loop leaves it alone; MI is the
// paper's estimator (self term excluded) rather than He's in-batch one.
// Inner steps run eagerly (the stop rule reads each loss on the host); a step that is not
// aggressive goes through train_step as usual (CUDA Graphs included).
#pragma once
#include <cmath>
#include <limits>
#include <string>

#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../data/batcher.hpp"
#include "../eval/mi.hpp"
#include "adam.hpp"
#include "checkpoint.hpp"
#include "step_guard.hpp"

namespace couplevae {

// The inner loop's stop rule: add() each update's summed loss and token count; true when
// the loop must stop (a window ended with a per-token loss not below the previous one's).
class BurnMonitor {
 public:
  explicit BurnMonitor(int window) : window_(window) {}
  bool add(double loss_sum, double tokens) {
    sum_ += loss_sum;
    tokens_ += tokens;
    if (++count_ % window_ != 0) return false;
    const double cur = sum_ / std::max(tokens_, 1.0);
    const bool stop = !(cur < previous_);
    previous_ = cur;
    sum_ = tokens_ = 0;
    return stop;
  }

 private:
  int window_;
  long count_ = 0;
  double sum_ = 0, tokens_ = 0;
  double previous_ = std::numeric_limits<double>::infinity();
};

// When the phase ends: end_epoch(mi) records the MI measured at the end of an epoch and
// returns whether the phase goes on (false the first time MI fell below the previous one).
struct AggressiveSchedule {
  TrainState::Aggressive& s;
  bool end_epoch(double mi) {
    if (!s.on) return false;
    if (s.epochs > 0 && mi < s.last_mi) s.on = false;
    s.last_mi = mi;
    ++s.epochs;
    return s.on;
  }
};

// One aggressive training step t on `batch` (see the header). `inner` draws the inner
// loop's further batches; `inner_guard` clips and skips the inner updates as `guard` does
// the outer one (an inner loss or gradient that is not finite skips that update and counts).
// Returns the number of inference-network updates made.
template <class M>
int aggressive_step(M& model, Context<typename M::backend>& ctx, const Batch& batch, long t,
                    Adam<typename M::scalar, typename M::backend>& adam, StepGuard<typename M::backend>& guard,
                    StepGuard<typename M::backend>& inner_guard, Batcher& inner) {
  static_assert(detail::mi_applicable<M>(),
                "couplevae: aggressive training needs a stochastic posterior (Gaussian, Flow<K> or VMF): the "
                "phase ends by the posterior's mutual information, which the GRU-LM and the DAE do not have");
  require(adam.is_split(), "aggressive_step: the optimiser needs its groups (adam.split(inference_range(arena)))");
  const Config& cfg = model.config();
  const double lr = learning_rate(cfg, t);
  BurnMonitor monitor(cfg.aggressive_window);
  int updates = 0;
  Batch drawn;
  const Batch* x = &batch;
  for (int k = 1; k <= cfg.aggressive_inner; ++k) {
    model.zero_grad();
    const PendingLosses l = model.forward_async(ctx, *x, t);
    model.backward(ctx);
    inner_guard.check(model.arena(), l, t);
    adam.step(model.arena(), lr, inner_guard.gate(), ParamGroup::inference);
    const StepTally tally = inner_guard.read();
    if (tally.stop_step)
      throw Error("train: " + std::to_string(tally.run) + " non-finite losses or gradients in a row in the aggressive "
                  "inner loop of step " + std::to_string(t) + "; stopped (the last good checkpoint is kept)");
    const bool applied = tally.run == 0;
    updates += applied;
    if (applied && monitor.add(tally.last.loss * tally.last.sentences, double(tally.last.tokens))) break;
    if (k == cfg.aggressive_inner) break;
    drawn = inner.next();
    x = &drawn;
  }
  model.zero_grad();
  const PendingLosses l = model.forward_async(ctx, batch, t);
  model.backward(ctx);
  guard.check(model.arena(), l, t);
  adam.step(model.arena(), lr, guard.gate(), ParamGroup::generative);
  return updates;
}

}  // namespace couplevae
