// couplevae/model/losses.hpp: the loss of a forward pass, its parts, and where they live.
//
// Every model's objective is one formula over five batch means (reference.md §7-8):
//   loss = rec + reg + rec_c + lambda_c * couple
// rec   = mean_b -log p(x_b | z_b)          (L_rec)
// kl    = mean_b KL(q(z|x_b) || p(z))       (reported, unweighted; inside reg)
// reg   = L_reg, already weighted           (0 for the DAE and the GRU-LM)
// rec_c = L_rec^c, couple = L_couple        (Coupled models; 0 otherwise, lambda_c = 0)
// A forward pass accumulates the five parts into a (1, loss_parts) double buffer in the
// backend's memory (sum_into reductions, no host wait) and returns PendingLosses: where the
// parts are plus what the host already knows. Losses is the host copy: read_losses() waits
// for the backend once; the trainer's StepGuard (train/step_guard.hpp) instead combines the
// parts on the backend and reads them only for its progress lines.
#pragma once
#include <vector>

#include "../core/buffer.hpp"
#include "../core/hd.hpp"

namespace couplevae {

// The loss parts of one forward pass, each a batch mean (per sentence).
struct Losses {
  double loss = 0;       // the objective that backward differentiates
  double rec = 0;        // L_rec
  double reg = 0;        // L_reg (weighted)
  double kl = 0;         // unweighted mean KL
  double kl_weight = 0;  // lambda_KL(step)
  double rec_c = 0;      // L_rec^c (Coupled)
  double couple = 0;     // L_couple (Coupled, unweighted)
  int sentences = 0;
  long tokens = 0;       // predicted tokens, sum of (L + 1)
};

// The slots of the parts buffer.
enum LossPart : int { part_rec, part_kl, part_reg, part_rec_c, part_couple, loss_parts };

// A forward pass's losses while their parts are still on the backend.
struct PendingLosses {
  const double* parts = nullptr;  // loss_parts doubles in the backend's memory
  double lambda_c = 0;            // the coupling loss's weight (0 for uncoupled models)
  double kl_weight = 0;
  int sentences = 0;
  long tokens = 0;
};

// The Losses of parts p (a copy of the parts in the memory of the caller).
COUPLEVAE_HD inline Losses combine_losses(const double* p, const PendingLosses& l) {
  Losses out;
  out.rec = p[part_rec];
  out.kl = p[part_kl];
  out.reg = p[part_reg];
  out.rec_c = p[part_rec_c];
  out.couple = p[part_couple];
  out.loss = out.rec + out.reg + out.rec_c + l.lambda_c * out.couple;
  out.kl_weight = l.kl_weight;
  out.sentences = l.sentences;
  out.tokens = l.tokens;
  return out;
}

// The host copy of l (waits for the backend); `parts` is the buffer l.parts points into.
template <class B>
Losses read_losses(const Buffer<double, B>& parts, const PendingLosses& l) {
  const std::vector<double> host = parts.to_host();
  return combine_losses(host.data(), l);
}

}  // namespace couplevae
