// couplevae/backend/cpu/decode_ops.hpp: decode_ops<cpu>, the kernels of autoregressive
// decoding (reference.md §5 "Greedy decoding", §13 BLEU / Dist / interpolation).
//
// pick_tokens, one decoding step for `rows` sentences, given logits (rows, V):
//   logits[i, masked] = -inf                          (<unk>, id 3: `test_non_unk`)
//   temperature <= 0 : w_i = argmax_k logits[i, k]    (first maximum on ties)
//   temperature  > 0 : w_i ~ softmax(logits_i / temperature), by inverting the CDF at one
//                      uniform in (0, 1); the step draws `draws` uniforms u (default rows) as
//                      one draw from the generator (Rng::uniform<double>), also for rows
//                      already finished, so the noise position after a step depends only on
//                      `draws`; row i uses u[slot[i]] (default u[i]). A loop that drops
//                      finished rows passes the full count and each running row's sentence.
//   finished[i] |= (w_i == eos); returns the number of rows not finished.
// Greedy decoding draws nothing.
// cut_at_eos: tokens (steps, rows) time-major -> one list per row, cut before its first <eos>
// but never empty: the authors' strip_eos keeps sent[:max(index(<eos>), 1)], so a row whose
// first token is <eos> comes back as {<eos>}; a row with no <eos> keeps all `steps` tokens.
// Plain pointer + size signatures, the ones a decode_ops<cuda> will implement (its
// cut_at_eos runs on tokens copied to the host).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../core/rng.hpp"
#include "../tags.hpp"

namespace couplevae {

// The primary template is never used: the backend's decode_ops header provides the
// specialisation (this one for cpu).
template <class B>
struct decode_ops {
  static_assert(is_backend_v<B>, "couplevae: decode_ops<B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: decode_ops<cuda> is not visible: include <couplevae/cuda.cuh> and compile this "
                "translation unit with nvcc, linked to couplevae::cuda (COUPLEVAE_WITH_CUDA=ON)");
};

template <>
struct decode_ops<cpu> {
  // logits (rows, V) are modified in place (the masked entry becomes -inf). masked < 0
  // masks nothing. tokens (rows) is overwritten; finished (rows) is updated.
  template <class T>
  static int pick_tokens(Rng& rng, T* logits, int rows, int V, int32_t masked, double temperature,
                         int32_t eos, int32_t* tokens, int32_t* finished, int draws = -1,
                         const int32_t* slot = nullptr) {
    const bool sample = temperature > 0;
    std::vector<double> u;
    if (sample) {
      u.resize(size_t(draws < 0 ? rows : draws));
      rng.uniform(u.data(), u.size());
    }
    int running = 0;
    for (int i = 0; i < rows; ++i) {
      T* x = logits + size_t(i) * V;
      if (masked >= 0 && masked < V) x[masked] = -std::numeric_limits<T>::infinity();
      int best = masked == 0 ? 1 : 0;
      for (int k = 0; k < V; ++k)
        if (k != masked && x[k] > x[best]) best = k;
      int pick = best;
      if (sample) {
        // p_k = exp((x_k - x_best) / T) / s, accumulated in double.
        const double m = double(x[best]), inv_t = 1.0 / temperature;
        double s = 0;
        for (int k = 0; k < V; ++k)
          if (k != masked) s += std::exp((double(x[k]) - m) * inv_t);
        const double target = u[size_t(slot ? slot[i] : i)] * s;
        double c = 0;
        pick = -1;
        int last = best;  // rounding can leave target just above the final sum
        for (int k = 0; k < V; ++k) {
          if (k == masked) continue;
          const double p = std::exp((double(x[k]) - m) * inv_t);
          if (p > 0) last = k;
          c += p;
          if (c > target && p > 0) {
            pick = k;
            break;
          }
        }
        if (pick < 0) pick = last;
      }
      tokens[i] = int32_t(pick);
      if (pick == eos) finished[i] = 1;
      running += finished[i] ? 0 : 1;
    }
    return running;
  }

  // out[i] = tokens[0.., i] cut at the first eos (kept when it is the very first token).
  static void cut_at_eos(const int32_t* tokens, int steps, int rows, int32_t eos,
                         std::vector<std::vector<int32_t>>& out) {
    out.assign(size_t(rows), {});
    for (int i = 0; i < rows; ++i) {
      auto& s = out[size_t(i)];
      for (int t = 0; t < steps; ++t) {
        const int32_t w = tokens[size_t(t) * rows + i];
        if (w == eos && t > 0) break;
        s.push_back(w);
        if (w == eos) break;  // t == 0: the list keeps its one token
      }
    }
  }
};

}  // namespace couplevae
