// couplevae/nn/batch_norm.hpp: BatchNorm1d over the rows of a (N, C) matrix.
//
//   training:   xhat = (x - mean_batch) / sqrt(var_batch + eps),  y = gamma * xhat + beta
//               running_mean/var <- (1 - m) * running + m * batch (unbiased var), m = 0.1
//   evaluation: the running statistics instead of the batch's
// gamma (init 1) and beta (init 0) are trained; running_mean (0) and running_var (1) are
// arena tensors marked non-trainable (saved in checkpoints, zero gradient, never moved by
// Adam). Used on the NF posteriors' heads (reference.md §3) and in the dilated CNN (§6).
// backward accumulates dgamma, dbeta and (when given) dX.
#pragma once
#include <string>

#include "../core/arena.hpp"
#include "../core/context.hpp"

namespace couplevae::nn {

template <class T, class B = cpu>
struct BatchNorm {
  Param gamma, beta, running_mean, running_var;
  int C = 0;
  double momentum = 0.1, eps = 1e-5;

  struct Cache {
    Buffer<T, B> xhat, inv_std;
    bool training = false;
  };

  BatchNorm() = default;
  BatchNorm(Arena<T, B>& ar, const std::string& name, int channels) : C(channels) {
    gamma = ar.add(name + ".weight", {C}, Init::constant_value(1.0));
    beta = ar.add(name + ".bias", {C}, Init::constant_value(0.0));
    running_mean = ar.add(name + ".running_mean", {C}, Init::constant_value(0.0), /*trainable=*/false);
    running_var = ar.add(name + ".running_var", {C}, Init::constant_value(1.0), /*trainable=*/false);
  }

  // X and Y may alias.
  void forward(Context<B>& ctx, Arena<T, B>& ar, View<T> X, View<T> Y, Cache& c) const {
    c.training = ctx.training;
    View<T> xh = c.xhat.shape(X.rows, C);
    ops<B>::batchnorm_forward(X.rows, C, X.data, ar.value(gamma), ar.value(beta), ar.value(running_mean),
                              ar.value(running_var), ctx.training, momentum, eps, xh.data,
                              c.inv_std.shape(1, C).data, Y.data);
  }
  void backward(Context<B>&, Arena<T, B>& ar, View<T> dY, View<T> dX, Cache& c) const {
    ops<B>::batchnorm_backward(dY.rows, C, c.xhat.data(), c.inv_std.data(), ar.value(gamma), dY.data, c.training,
                               ar.grad(gamma), ar.grad(beta), dX ? dX.data : nullptr);
  }
};

}  // namespace couplevae::nn
