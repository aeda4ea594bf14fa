// couplevae/decoder/side_by_side.hpp: decoders of one batch run side by side (Coupled's
// Decoder and its Decoder^c, paper Figure 3).
//
// A DecoderRun is one decoder with its signal h (B, E), its per-sentence values v (B, 1:
// forward's rec out, backward's drec in), the gradient dh (B, E) that backward adds to, and
// its cache. forward_decoders(runs) gives each run's rec as run.dec.forward would, and
// backward_decoders(runs) each run's gradients as run.dec.backward would, the runs taken in
// their order: the same numbers, the same draws from ctx.rng in the same order. A decoder
// module with static forward_each / backward_each over such runs gets them all at once
// (Decoder<GRU>: the runs' recurrences step together, on cuda one launch per step for both,
// nn::GRU::run_steps); any other runs them one after another.
#pragma once
#include <cstddef>
#include <span>

#include "../core/arena.hpp"
#include "../core/batch.hpp"
#include "../core/context.hpp"
#include "../nn/embedding.hpp"

namespace couplevae {

template <class D, class T>
struct DecoderRun {
  const D& dec;
  View<T> h, v, dh;
  typename D::Cache& c;
};

template <class D, class T, class B, size_t N>
void forward_decoders(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                      const DecoderRun<D, T> (&array)[N]) {
  const std::span<const DecoderRun<D, T>> runs(array);
  if constexpr (requires { D::forward_each(ctx, ar, emb, b, runs); })
    D::forward_each(ctx, ar, emb, b, runs);
  else
    for (const auto& r : runs) r.dec.forward(ctx, ar, emb, b, r.h, r.v, r.c);
}

template <class D, class T, class B, size_t N>
void backward_decoders(Context<B>& ctx, Arena<T, B>& ar, const nn::Embedding<T, B>& emb, const Batch& b,
                       const DecoderRun<D, T> (&array)[N]) {
  const std::span<const DecoderRun<D, T>> runs(array);
  if constexpr (requires { D::backward_each(ctx, ar, emb, b, runs); })
    D::backward_each(ctx, ar, emb, b, runs);
  else
    for (const auto& r : runs) r.dec.backward(ctx, ar, emb, b, r.h, r.v, r.dh, r.c);
}

}  // namespace couplevae
