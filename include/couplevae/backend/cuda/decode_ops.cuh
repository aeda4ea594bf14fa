// couplevae/backend/cuda/decode_ops.cuh: decode_ops<cuda>, token choice during generation.
//
// Generation is one small step per token and its choice needs the host anyway (the loop
// stops when every row has its <eos>), so the cuda backend copies each step's logits
// (rows, V) to the host and runs decode_ops<cpu>: the same tokens, the same draws from the
// generator. Training and evaluation never call it.
#pragma once
#include <vector>

#include "../cpu/decode_ops.hpp"
#include "buffer.cuh"

namespace couplevae {

template <>
struct decode_ops<cuda> {
  template <class T>
  static int pick_tokens(Rng& rng, T* logits, int rows, int V, int32_t masked, double temperature, int32_t eos,
                         int32_t* tokens, int32_t* finished, int draws = -1, const int32_t* slot = nullptr) {
    std::vector<T> host(size_t(rows) * V);
    if (!host.empty()) {
      cuda_rt::runtime().outside_graphs("reading logits back");
      COUPLEVAE_CUDA(cudaMemcpyAsync(host.data(), logits, host.size() * sizeof(T), cudaMemcpyDeviceToHost,
                                     cuda_rt::stream()));
      cuda_rt::runtime().sync();
    }
    return decode_ops<cpu>::pick_tokens(rng, host.data(), rows, V, masked, temperature, eos, tokens, finished, draws,
                                        slot);
  }
  static void cut_at_eos(const int32_t* tokens, int steps, int rows, int32_t eos,
                         std::vector<std::vector<int32_t>>& out) {
    decode_ops<cpu>::cut_at_eos(tokens, steps, rows, eos, out);
  }
};

}  // namespace couplevae
