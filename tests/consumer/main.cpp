// A consumer of the installed (or vendored) couplevae package: the README's snippet, run for
// one SGD step. Exits 0 only if the loss went down. Built by tests/consumer_tests.cmake.
#include <couplevae/couplevae.hpp>

#include <cmath>
#include <cstdio>
#include <exception>

using namespace couplevae;
using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;   // backend defaults to cpu
using CoupleVAE = Coupled<VAE>;

static void print(const char* when, const Losses& l) {
  std::printf("%-7s loss %.6f rec %.6f kl %.6f rec_c %.6f couple %.6f\n", when, l.loss, l.rec, l.kl,
              l.rec_c, l.couple);
}

int main() try {
  Config cfg = Config::preset("ptb");      // sizes/schedule of reference.md, validated
  cfg.vocab_size = 50; cfg.embed = 16; cfg.hidden = 8; cfg.latent = 4;
  CoupleVAE model(cfg, /*seed=*/0);

  // One training step on a hand-made batch of token ids (ids 0..3 are reserved).
  Batch batch = make_batch({{4, 5, 6, 7}, {8, 9, 10}}, cfg.vocab_size);
  Context<> ctx(/*seed=*/0);
  Losses l = model.forward(ctx, batch, /*step=*/1);
  model.zero_grad();
  model.backward(ctx);
  model.arena().visit([&](const ParamInfo& info, float* value, float* grad) {
    for (size_t i = 0; i < info.size; ++i) value[i] -= 0.01f * grad[i];
  });

  // The same batch again with the same noise (a context with the same seed replays the draws).
  Context<> ctx2(/*seed=*/0);
  Losses after = model.forward(ctx2, batch, /*step=*/1);

  print("before", l);
  print("after", after);
  const bool ok = std::isfinite(l.loss) && std::isfinite(after.loss) && after.loss < l.loss;
  std::printf("%s: loss %.6f -> %.6f\n", ok ? "ok" : "FAILED (loss did not decrease)", l.loss, after.loss);
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "couplevae_consumer: %s\n", e.what());
  return 2;
}
