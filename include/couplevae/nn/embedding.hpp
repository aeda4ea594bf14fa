// couplevae/nn/embedding.hpp: the word embedding table, shared by the encoder and every
// decoder (reference.md §1: one 200-dim matrix initialised N(0, 1), trainable).
//
// Shapes: table (V, E); ids (N); Y (N, E) with row stride ld (so a caller can write the
// embedding into the left half of a wider [emb; h] row). backward scatters dY rows into the
// table's gradient (accumulate). Ids < 0 are rejected by the batch builder, not here.
#pragma once
#include <string>

#include "../core/arena.hpp"
#include "../core/context.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct Embedding {
  Param table;
  int vocab = 0, dim = 0;

  Embedding() = default;
  Embedding(Arena<T, B>& ar, const std::string& name, int vocab_size, int embed)
      : vocab(vocab_size), dim(embed) {
    table = ar.add(name + ".weight", {vocab, dim}, Init::normal_std(1.0));
  }

  void forward(Context<B>&, Arena<T, B>& ar, const int32_t* ids, int n, T* Y, int ld) const {
    ops<B>::gather_rows(ar.value(table), dim, ids, n, Y, ld);
  }
  void backward(Context<B>&, Arena<T, B>& ar, const int32_t* ids, int n, const T* dY, int ld) const {
    ops<B>::scatter_add_rows(dY, ld, ids, n, dim, ar.grad(table));
  }
};

}  // namespace couplevae::nn
