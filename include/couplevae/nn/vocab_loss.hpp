// couplevae/nn/vocab_loss.hpp: the vocabulary layer and its summed cross-entropy over a
// batch's output rows (core/batch.hpp, Batch::outputs).
//
//   X (n, F)       the head's rows, one per decoder row of steps >= 1
//   S = X[source]  (count, F), gathered; X itself when the rows are the identity (packed).
//                  A head whose X has another layout (the CNN's padded one) passes its own
//                  source: X's row of each output row.
//   logits = S W^T + b (count, V), then softmax in place (kept for backward); b is added by
//                  the softmax as it reads each row, not in a pass of its own
//   loss_k = -log softmax(logits_k)[target_k], 0 when target_k < 0
//   rec[i] = sum_{k : item_k = i} loss_k   (B, 1), overwritten
// backward, given drec (B, 1): d logits_k = drec[item_k] (p_k - onehot(target_k)), and db +=
// their column sums as the softmax backward writes them; the Linear accumulates dW and dS;
// dX += scatter(dS) (accumulate rule).
// Gathering is what lets a bucketed batch's largest layer run on its real tokens only.
// `out` is the head's Linear (F -> V), passed in: its parameters stay the head's.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "../core/batch.hpp"
#include "linear.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct VocabLoss {
  struct Cache {
    Buffer<T, B> S, logits, loss, dloss, dS;
    Buffer<int32_t, B> source_b, item_b, target_b;
    const int32_t *source = nullptr, *item = nullptr, *target = nullptr;
    int count = 0;
    bool identity = true;
  };

  // Keeps the probabilities and the gathered rows for backward.
  static void forward(Context<B>&, Arena<T, B>& ar, const Linear<T, B>& out, const OutputRows& rows, View<T> X,
                      View<T> rec, Cache& c, const std::vector<int32_t>* source = nullptr) {
    View<T> S = select(rows, X, c, source);
    View<T> logits = c.logits.shape(c.count, out.out);
    out.product(ar, S, logits);
    View<T> loss = c.loss.shape(c.count, 1);
    ops<B>::softmax_xent(logits.data, c.count, out.out, c.target, loss.data, /*keep_probs=*/true, out.bias_values(ar));
    sum_per_item(loss, rec, c);
  }

  // The same rec in chunks of `chunk` rows, keeping nothing for backward: memory stays
  // bounded for large evaluation batches.
  static constexpr int chunk_rows = 256;
  static void loss_only(Context<B>&, Arena<T, B>& ar, const Linear<T, B>& out, const OutputRows& rows, View<T> X,
                        View<T> rec, Cache& c, const std::vector<int32_t>* source = nullptr,
                        int chunk = chunk_rows) {
    View<T> S = select(rows, X, c, source);
    View<T> loss = c.loss.shape(c.count, 1);
    for (int r0 = 0; r0 < c.count; r0 += chunk) {
      const int m = std::min(chunk, c.count - r0);
      View<T> logits = c.logits.shape(m, out.out);
      out.product(ar, S.block(r0, m), logits);
      ops<B>::softmax_xent(logits.data, m, out.out, c.target + r0, loss.data + r0, /*keep_probs=*/false,
                           out.bias_values(ar));
    }
    sum_per_item(loss, rec, c);
  }

  static void backward(Context<B>&, Arena<T, B>& ar, const Linear<T, B>& out, View<T> X, View<T> drec, View<T> dX,
                       Cache& c) {
    const int V = out.out, F = out.in;
    View<T> dloss = c.dloss.shape(c.count, 1);
    ops<B>::segment_broadcast(drec.data, c.item, c.count, dloss.data);
    View<T> dlogits{c.logits.data(), c.count, V};
    ops<B>::softmax_xent_backward(dlogits.data, c.count, V, c.target, dloss.data, out.bias_grad(ar));
    if (c.identity) {
      out.product_backward(ar, X, dlogits, dX);
      return;
    }
    View<T> dS = c.dS.zeros(c.count, F);
    out.product_backward(ar, View<T>{c.S.data(), c.count, F}, dlogits, dS);
    ops<B>::scatter_add_rows(dS.data, F, c.source, c.count, F, dX.data);
  }

 private:
  // Uploads the rows' indices and gathers S (or returns X for the identity).
  static View<T> select(const OutputRows& rows, View<T> X, Cache& c, const std::vector<int32_t>* source) {
    c.count = rows.count();
    c.identity = rows.identity && !source;
    require(!source || int(source->size()) == c.count, "VocabLoss: " + std::to_string(source ? source->size() : 0) +
                                                           " sources for " + std::to_string(c.count) + " output rows");
    require(!c.identity || X.rows == c.count, "VocabLoss: " + std::to_string(X.rows) + " head rows for " +
                                                  std::to_string(c.count) + " output rows");
    c.item = backend_ids(rows.item, c.item_b);
    c.target = backend_ids(rows.target, c.target_b);
    if (c.identity) return X;
    c.source = backend_ids(source ? *source : rows.source, c.source_b);
    View<T> S = c.S.shape(c.count, X.cols);
    ops<B>::gather_rows(X.data, X.cols, c.source, c.count, S.data, X.cols);
    return S;
  }
  static void sum_per_item(View<T> loss, View<T> rec, Cache& c) {
    ops<B>::fill(rec.data, size_t(rec.rows), T(0));
    ops<B>::segment_sum(loss.data, c.item, c.count, rec.data);
  }
};

}  // namespace couplevae::nn
