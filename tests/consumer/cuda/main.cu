// A consumer of the cuda component: the README's Couple-VAE step on the GPU. Without a
// usable CUDA device it says so and exits 0 (the build is what this checks there); with one,
// it takes one SGD step and exits 0 only if the loss went down.
#include <couplevae/couplevae.hpp>
#include <couplevae/cuda.cuh>

#include <cmath>
#include <cstdio>
#include <exception>

using namespace couplevae;
using CoupleVAE = Coupled<Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cuda>>;

int main() try {
  if (cuda_rt::device_count() == 0) {
    std::printf("no CUDA device: built against couplevae::cuda, not run\n");
    return 0;
  }
  Config cfg = Config::preset("ptb");
  cfg.vocab_size = 50; cfg.embed = 16; cfg.hidden = 8; cfg.latent = 4;
  CoupleVAE model(cfg, /*seed=*/0);
  Batch batch = make_batch({{4, 5, 6, 7}, {8, 9, 10}}, cfg.vocab_size);
  Context<cuda> ctx(/*seed=*/0);
  const Losses l = model.forward(ctx, batch, /*step=*/1);
  model.zero_grad();
  model.backward(ctx);
  // SGD through the backend's own kernel: values += -0.01 * grads over the whole arena.
  ops<cuda>::axpy(model.arena().total(), -0.01f, model.arena().grads().data(), model.arena().values().data());
  Context<cuda> ctx2(/*seed=*/0);
  const Losses after = model.forward(ctx2, batch, /*step=*/1);
  std::printf("loss %.6f rec %.6f kl %.6f rec_c %.6f couple %.6f\n", l.loss, l.rec, l.kl, l.rec_c, l.couple);
  const bool ok = std::isfinite(l.loss) && std::isfinite(after.loss) && after.loss < l.loss;
  std::printf("%s: loss %.6f -> %.6f\n", ok ? "ok" : "FAILED (loss did not decrease)", l.loss, after.loss);
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "couplevae_consumer_cuda: %s\n", e.what());
  return 2;
}
