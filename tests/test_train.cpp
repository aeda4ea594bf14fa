// Training pieces: Adam against a hand computation, clipping, the schedules, checkpoints
// (round trip, refusal of other models, resume = uninterrupted run bit for bit), and the
// importance-sampled NLL against independent computations.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <limits>
#include <thread>

#include <couplevae/couplevae.hpp>

#include "fixtures.hpp"
#include "temp_dir.hpp"

using namespace couplevae;
namespace fs = std::filesystem;

namespace {

Config small_config(int vocab) {
  Config c = fixtures::tiny_sizes(Config::preset("ptb"), vocab);
  c.valid_every = 5;
  c.valid_samples = 3;
  c.kl_start = 2;
  return c;
}

Dataset small_dataset() { return fixtures::tiny_corpus({{"a", "b"}, {"c", "d", "a"}, {"b"}}); }
using VAE = models::VAE;
using CVAE = Coupled<models::VAE>;
}  // namespace

TEST_CASE("adam: one step equals the hand-computed update, moments decay for zero gradients") {
  Arena<double> ar;
  Param p = ar.add("x", {3}, Init::constant_value(1.0));
  ar.finalize();
  ar.initialise(0);
  Config c;
  Adam<double> adam(ar, c);
  double* g = ar.grad(p);
  g[0] = 0.5, g[1] = -2.0, g[2] = 0.0;
  adam.step(ar, 0.1);
  // t = 1: mhat = g, vhat = g^2, so the step is lr * g / (|g| + eps).
  CHECK(ar.value(p)[0] == doctest::Approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8)));
  CHECK(ar.value(p)[1] == doctest::Approx(1.0 + 0.1 * 2.0 / (2.0 + 1e-8)));
  CHECK(ar.value(p)[2] == 1.0);
  g[0] = 0, g[1] = 0;
  adam.step(ar, 0.1);
  // t = 2 with g = 0: m = 0.9 * 0.05 * ... the update continues from the decayed moments.
  const double m = 0.9 * 0.1 * 0.5, v = 0.999 * 0.001 * 0.25;
  const double expect = (1.0 - 0.1 * 0.5 / (0.5 + 1e-8)) - 0.1 * (m / (1 - 0.81)) / (std::sqrt(v / (1 - 0.999 * 0.999)) + 1e-8);
  CHECK(ar.value(p)[0] == doctest::Approx(expect).epsilon(1e-10));
}

TEST_CASE("clipping, learning-rate and KL schedules") {
  Arena<double> ar;
  Param p = ar.add("x", {2}, Init::constant_value(0.0));
  ar.finalize();
  ar.grad(p)[0] = 30, ar.grad(p)[1] = 40;
  CHECK(clip_grad_norm(ar, 100.0) == doctest::Approx(50));
  CHECK(ar.grad(p)[0] == 30);
  CHECK(clip_grad_norm(ar, 10.0) == doctest::Approx(50));
  CHECK(ar.grad(p)[0] == doctest::Approx(6.0).epsilon(1e-6));
  CHECK(ar.grad(p)[1] == doctest::Approx(8.0).epsilon(1e-6));
  Config c;
  CHECK(learning_rate(c, 1) == 1e-3);
  CHECK(learning_rate(c, 30000) == 1e-3);
  CHECK(learning_rate(c, 31999) == 1e-3);
  CHECK(learning_rate(c, 32000) == 5e-4);
  CHECK(learning_rate(c, 34001) == 2.5e-4);
  CHECK(kl_weight(2000, 2000, 40000, 1.0) == 0.0);
  CHECK(kl_weight(2001, 2000, 40000, 1.0) == 0.000025);
  CHECK(kl_weight(22000, 2000, 40000, 1.0) == 0.5);
  CHECK(kl_weight(90000, 2000, 40000, 1.0) == 1.0);
  CHECK(kl_weight(90000, 2000, 40000, 0.8) == 0.8);
  CHECK(kl_weight(2003, 2000, 40000, 1.0) == doctest::Approx(0.000075));
}

TEST_CASE("step guard: clips like clip_grad_norm, skips non-finite steps, stops after a run of them, sums windows") {
  auto make = [](Arena<double>& ar) {
    Param p = ar.add("x", {2}, Init::constant_value(1.0));
    ar.finalize();
    ar.initialise(0);
    return p;
  };
  Arena<double> a, b;
  const Param pa = make(a), pb = make(b);
  Config c;
  Adam<double> oa(a, c), ob(b, c);
  StepGuard<cpu> guard(/*max_norm=*/10, /*max_nonfinite=*/3);
  // The parts buffer a forward would leave: rec, kl, reg, rec_c, couple.
  double parts[loss_parts] = {4.0, 2.0, 0.5, 3.0, -1.5};
  PendingLosses l{parts, /*lambda_c=*/0.1, /*kl_weight=*/0.25, /*sentences=*/7, /*tokens=*/40};
  auto step = [&](double g0, double g1, long t) {
    a.grad(pa)[0] = g0, a.grad(pa)[1] = g1;
    guard.check(a, l, t);
    oa.step(a, 0.01, guard.gate());
    return guard.read();
  };

  // Step 1: norm 50 > 10, clipped by 10 / (50 + 1e-6): the same update as clip_grad_norm + Adam.
  StepTally s = step(30, 40, 1);
  CHECK(s.norm == 50);
  CHECK(s.gate.apply == 1);
  CHECK(s.gate.scale == 10 / (50 + 1e-6));
  b.grad(pb)[0] = 30, b.grad(pb)[1] = 40;
  CHECK(clip_grad_norm(b, 10.0) == 50);
  ob.step(b, 0.01);
  CHECK(a.value(pa)[0] == b.value(pb)[0]);
  CHECK(a.value(pa)[1] == b.value(pb)[1]);
  CHECK(a.value(pa)[0] != 1.0);
  CHECK(oa.steps() == 1);
  CHECK(s.last.loss == doctest::Approx(4.0 + 0.5 + 3.0 - 0.15).epsilon(1e-15));
  CHECK(s.last.kl == 2.0);
  CHECK(s.last.kl_weight == 0.25);
  CHECK(s.last.tokens == 40);

  // Step 2: a small gradient is not clipped.
  s = step(0.3, -0.4, 2);
  CHECK(s.gate.scale == 1.0);
  CHECK(s.norm == doctest::Approx(0.5).epsilon(1e-15));
  b.grad(pb)[0] = 0.3, b.grad(pb)[1] = -0.4;
  clip_grad_norm(b, 10.0);
  ob.step(b, 0.01);
  CHECK(a.value(pa)[0] == b.value(pb)[0]);
  CHECK(s.window_steps == 2);
  CHECK(s.window.loss == doctest::Approx(2 * (4.0 + 0.5 + 3.0 - 0.15)).epsilon(1e-15));
  CHECK(s.window.rec == 8.0);
  CHECK(s.window_norm == doctest::Approx(50.5).epsilon(1e-15));

  // A non-finite loss part or gradient skips the update entirely (moments and t too).
  const double x0 = a.value(pa)[0];
  const std::vector<double> m0 = oa.first_moment().to_host();
  parts[part_reg] = std::numeric_limits<double>::quiet_NaN();
  s = step(1, 1, 3);
  CHECK(s.gate.apply == 0);
  CHECK(s.skipped == 1);
  CHECK(s.run == 1);
  parts[part_reg] = 0.5;
  s = step(std::numeric_limits<double>::infinity(), 1, 4);
  CHECK(s.gate.apply == 0);
  CHECK(s.skipped == 2);
  CHECK(s.run == 2);
  CHECK(a.value(pa)[0] == x0);
  CHECK(oa.first_moment().to_host() == m0);
  CHECK(oa.steps() == 2);
  CHECK(s.window_steps == 2);  // skipped steps are not in the window
  CHECK(s.stop_step == 0);
  // A finite step ends the run.
  s = step(0.1, 0.1, 5);
  CHECK(s.gate.apply == 1);
  CHECK(s.run == 0);
  CHECK(s.skipped == 2);
  CHECK(oa.steps() == 3);

  // A new window keeps the counters and the last step.
  guard.start_window();
  s = guard.read();
  CHECK(s.window_steps == 0);
  CHECK(s.window.loss == 0);
  CHECK(s.window_norm == 0);
  CHECK(s.skipped == 2);
  CHECK(s.last.rec == 4.0);

  // Three non-finite steps in a row stop the run at the third; nothing applies afterwards.
  parts[part_rec] = std::numeric_limits<double>::infinity();
  for (long t = 6; t <= 8; ++t) s = step(1, 1, t);
  CHECK(s.stop_step == 8);
  CHECK(s.run == 3);
  parts[part_rec] = 4.0;
  const double x1 = a.value(pa)[0];
  s = step(1, 1, 9);
  CHECK(s.gate.apply == 0);
  CHECK(s.stop_step == 8);
  CHECK(a.value(pa)[0] == x1);
  CHECK(oa.steps() == 3);

  // restore() starts a fresh tally with the skipped count of a resumed run.
  guard.restore(5);
  s = guard.read();
  CHECK(s.skipped == 5);
  CHECK(s.stop_step == 0);
  CHECK(s.run == 0);
}

TEST_CASE("train(): the backend-side guard gives the same parameters as the host loop it replaced") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  c.clip_norm = 0.5;  // small enough that most steps are clipped
  c.kl_start = -c.kl_anneal_steps;  // KL weight 1 from the start: the progress line's reg is its kl
  const uint64_t seed = 4;
  CVAE m(c, 1), ref(c, 1);
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "couple-vae";
  o.seed = seed;
  o.steps = 12;
  o.log_every = 5;
  o.log = &log;
  const TrainResult r = train(m, d, o);
  // The same steps on the host: forward, backward, clip_grad_norm, Adam (no validation:
  // it draws from its own generator and does not touch training).
  Adam<float> adam(ref.arena(), c);
  Batcher batcher(d.train, c.vocab_size, seed, c.batch_size);
  Context<> ctx(Rng(seed).derive(0x747261696eull).seed, true);
  long clipped = 0;
  Losses last;
  for (long t = 1; t <= o.steps; ++t) {
    const Batch batch = batcher.next();
    ref.zero_grad();
    last = ref.forward(ctx, batch, t);
    ref.backward(ctx);
    clipped += clip_grad_norm(ref.arena(), c.clip_norm) > c.clip_norm;
    adam.step(ref.arena(), learning_rate(c, t));
  }
  CHECK(clipped > 6);
  CHECK(std::equal(m.arena().values().data(), m.arena().values().data() + m.arena().total(),
                   ref.arena().values().data()));
  CHECK(r.last.loss == last.loss);
  CHECK(r.last.couple == last.couple);
  CHECK(r.nonfinite_skipped == 0);
  CHECK(log.str().find("step 5/12 | loss") != std::string::npos);
  // The progress line names every part of the loss: loss = rec + reg + rec_c + lambda_c couple.
  const std::string text = log.str();
  const size_t at = text.find("step 12/12 | loss");
  REQUIRE(at != std::string::npos);
  double loss = 0, rec = 0, reg = 0, kl = 0, w = 0, rec_c = 0, couple = 0;
  REQUIRE(std::sscanf(text.c_str() + at, "step 12/12 | loss %lf rec %lf reg %lf kl %lf (w %lf) rec_c %lf couple %lf",
                      &loss, &rec, &reg, &kl, &w, &rec_c, &couple) == 7);
  CHECK(w == 1.0);
  CHECK(reg > 0.01);
  CHECK(std::abs(reg - kl) <= 2e-3);  // printed to 3 decimals
  CHECK(std::abs(loss - (rec + reg + rec_c + c.lambda_c * couple)) <= 5e-3);
}

TEST_CASE("importance-sampled NLL: N = 1 gives nll = rec + kl per sentence, PPL is corpus level") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  VAE model(c, 3);
  const NllReport r1 = evaluate_nll(model, d.valid, 1, 11);
  CHECK(r1.nll == doctest::Approx(r1.rec + r1.kl).epsilon(1e-9));
  CHECK(r1.sentences == 3);
  CHECK(r1.tokens == 3 + 4 + 2);
  CHECK(r1.ppl == doctest::Approx(std::exp(r1.nll * 3 / 9)).epsilon(1e-9));
  // Independent recomputation of the estimator from the raw terms.
  Context<> ctx(11, false);
  const Batch b = make_batch(d.valid, c.vocab_size);
  const ImportanceTerms it = model.importance_weights(ctx, b, 50);
  double nll = 0;
  for (int i = 0; i < it.batch; ++i) {
    double s = 0;
    for (int k = 0; k < 50; ++k) s += std::exp(it.log_weight[i * 50 + k]);
    nll += -std::log(s / 50);
    for (int k = 0; k < 50; ++k)
      CHECK(it.log_weight[i * 50 + k] == doctest::Approx(-it.rec[i * 50 + k] - it.log_ratio[i * 50 + k]));
  }
  const NllReport r50 = evaluate_nll(model, d.valid, 50, 11);
  CHECK(r50.nll == doctest::Approx(nll / 3).epsilon(1e-6));
  // Jensen: the IW bound is tighter than the ELBO on average.
  CHECK(r50.nll <= r50.rec + r50.kl + 1e-9);
}

TEST_CASE("importance-sampled NLL is the same with 1, 2 or 3 evaluation threads (noise by sentence and sample)") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  CVAE model(c, 3);
  // batch_size 2: five batches of the 9 training sentences, shared out differently.
  const NllReport one = evaluate_nll(model, d.train, 7, 5, size_t(-1), 2, {}, 1);
  size_t last_done = 0;
  for (int threads : {2, 3}) {
    const NllReport r = evaluate_nll(model, d.train, 7, 5, size_t(-1), 2, [&](size_t done, size_t) { last_done = done; },
                                     threads);
    CHECK(r.nll == doctest::Approx(one.nll).epsilon(1e-6));
    CHECK(r.kl == doctest::Approx(one.kl).epsilon(1e-6));
    CHECK(r.rec_c == doctest::Approx(one.rec_c).epsilon(1e-6));
    CHECK(r.sentences == 9);
    CHECK(last_done == 9);
  }
  // Other noise gives another estimate (the streams are really used).
  CHECK(evaluate_nll(model, d.train, 7, 6, size_t(-1), 2, {}, 2).nll != doctest::Approx(one.nll).epsilon(1e-9));
}

TEST_CASE("evaluation batching: eval_rows and eval_batch_size change the work, not the noise of any (sentence, sample)") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  // The configuration: defaults, JSON round trip, old JSON without the keys, bad values.
  CHECK(c.eval_batch() == c.batch_size);
  Config e = c;
  e.eval_batch_size = 7;
  e.eval_rows = 9;
  CHECK(e.eval_batch() == 7);
  CHECK(Config::from_json(e.to_json()).to_json() == e.to_json());
  nlohmann::json old = e.to_json();
  old.erase("eval_batch_size");
  old.erase("eval_rows");
  CHECK(Config::from_json(old).eval_batch() == c.batch_size);
  CHECK(Config::from_json(old).eval_rows == Config{}.eval_rows);
  e.eval_batch_size = -1;
  CHECK_THROWS_WITH_AS(e.validate(), doctest::Contains("eval_batch_size must be >= 0"), Error);
  e.eval_batch_size = 0;
  e.eval_rows = 0;
  CHECK_THROWS_WITH_AS(e.validate(), doctest::Contains("eval_rows must be positive"), Error);

  // eval_rows = 1 decodes one copy of each sentence at a time (k = 1), 2000 all of its 400
  // samples at once. Each (sentence, sample) pair draws the same noise either way
  // (posterior/noise.hpp), so the estimates agree to float rounding; another seed differs.
  const int N = 400;
  auto estimate = [&](int rows, uint64_t seed) {
    Config r = c;
    r.eval_rows = rows;
    VAE model(r, 3);
    return evaluate_nll(model, d.valid, N, seed);
  };
  const NllReport one = estimate(1, 11), all = estimate(2000, 11), other = estimate(2000, 12);
  CHECK(one.nll == doctest::Approx(all.nll).epsilon(1e-5));
  CHECK(one.kl == doctest::Approx(all.kl).epsilon(1e-5));
  CHECK(one.rec == doctest::Approx(all.rec).epsilon(1e-5));
  CHECK(other.nll != all.nll);
  // The same quantity with other noise: across seeds 11-18 this estimate spreads by 0.6%.
  CHECK(other.nll == doctest::Approx(all.nll).epsilon(0.04));

  // The trainer validates in batches of eval_batch(): its step-5 validation (the only one,
  // so the best) is evaluate_nll's with batches of 2 on the trained model, and with batches
  // of 4 too, up to rounding.
  std::ostringstream log;
  TrainOptions o;
  o.seed = 5;
  o.steps = 5;
  o.log = &log;
  Config t = c;
  t.eval_batch_size = 2;
  VAE model(t, 5);
  const TrainResult res = train(model, d, o);
  REQUIRE(res.best_step == 5);
  CHECK(res.best_valid == evaluate_nll(model, d.valid, t.valid_samples, o.seed + 5, size_t(-1), 2).nll);
  CHECK(res.best_valid ==
        doctest::Approx(evaluate_nll(model, d.valid, t.valid_samples, o.seed + 5, size_t(-1), t.batch_size).nll)
            .epsilon(1e-5));
  CHECK(log.str().find("valid step 5: nll") != std::string::npos);
  CHECK(log.str().find(" s) (best)") != std::string::npos);
}

TEST_CASE("checkpoints: round trip, metadata, and refusal of another model or architecture") {
  TempDir tmp;
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  CVAE a(c, 1);
  const std::string path = tmp / "a.safetensors";
  save_checkpoint(path, a, "couple-vae", d.vocab);
  const CheckpointInfo info = read_checkpoint_info(path);
  CHECK(info.model == "couple-vae");
  CHECK(info.structure == CVAE::structure());
  CHECK(info.vocab == d.vocab);
  CHECK(info.config.to_json() == c.to_json());
  CVAE b(c, 2);
  load_checkpoint(path, b);
  CHECK(std::equal(a.arena().values().data(), a.arena().values().data() + a.arena().total(), b.arena().values().data()));
  VAE other(c, 1);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, other), doctest::Contains("not a gaussian-kl-gru"), Error);
  Config c2 = c;
  c2.latent = 4;
  CVAE bigger(c2, 1);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, bigger), doctest::Contains("does not match"), Error);
  Adam<float> adam(b.arena(), c);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, b, &adam), doctest::Contains("no optimizer state"), Error);
  // A NaN anywhere is refused with the tensor's name and the element.
  const auto& first = a.arena().infos()[1];
  a.arena().values().data()[first.offset + 2] = std::numeric_limits<float>::quiet_NaN();
  save_checkpoint(path, a, "couple-vae", d.vocab);
  const std::string expected = "tensor '" + first.name + "' holds a non-finite value (nan) at element 2";
  CHECK_THROWS_WITH_AS(load_checkpoint(path, b), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("trainer: best/last checkpoints, refusal to overwrite, and resume = uninterrupted run bit for bit") {
  TempDir tmp;
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "couple-vae";
  o.seed = 5;
  o.log_every = 3;
  o.log = &log;
  // Uninterrupted: 12 steps.
  o.out_dir = tmp / "full";
  o.steps = 12;
  CVAE full(c, 5);
  const Batch probe = make_batch(d.train, c.vocab_size);
  Context<> eval_ctx(0, false);
  const double rec_before = full.forward(eval_ctx, probe, 1).rec;
  const TrainResult r = train(full, d, o);
  eval_ctx.rng.position = 0;
  CHECK(full.forward(eval_ctx, probe, 1).rec < rec_before);
  CHECK(r.steps == 12);
  CHECK(fs::exists(tmp / "full/last.safetensors"));
  CHECK(fs::exists(tmp / "full/best.safetensors"));
  CHECK(log.str().find("step 3/12") != std::string::npos);
  CHECK(log.str().find("steps/s") != std::string::npos);
  CHECK(log.str().find("ETA") != std::string::npos);
  // The same folder again is refused.
  CVAE again(c, 5);
  CHECK_THROWS_WITH_AS(train(again, d, o), doctest::Contains("already holds a run"), Error);
  // Interrupted: 10 steps (last checkpoint at step 10), then resume to 12.
  o.out_dir = tmp / "part";
  o.steps = 10;
  CVAE part(c, 5);
  train(part, d, o);
  TrainOptions o2 = o;
  o2.steps = 12;
  o2.resume = tmp / "part/last.safetensors";
  CVAE resumed(c, 99);  // different init: everything must come from the checkpoint
  train(resumed, d, o2);
  const auto& A = full.arena().values();
  const auto& Bv = resumed.arena().values();
  CHECK(std::equal(A.data(), A.data() + full.arena().total(), Bv.data()));
}

TEST_CASE("two models trained at the same time in two threads equal the same runs one after the other") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  auto run = [&](CVAE& m, uint64_t seed, std::ostream& log) {
    TrainOptions o;
    o.model_name = "couple-vae";
    o.seed = seed;
    o.steps = 8;
    o.log = &log;
    train(m, d, o);
  };
  std::ostringstream l1, l2, l3, l4;
  CVAE a(c, 1), b(c, 2);
  run(a, 1, l1);
  run(b, 2, l2);
  CVAE ta(c, 1), tb(c, 2);
  std::thread t1([&] { run(ta, 1, l3); });
  std::thread t2([&] { run(tb, 2, l4); });
  t1.join();
  t2.join();
  CHECK(std::equal(a.arena().values().data(), a.arena().values().data() + a.arena().total(), ta.arena().values().data()));
  CHECK(std::equal(b.arena().values().data(), b.arena().values().data() + b.arena().total(), tb.arena().values().data()));
  CHECK(!std::equal(a.arena().values().data(), a.arena().values().data() + a.arena().total(), b.arena().values().data()));
}

TEST_CASE("NaN guard: non-finite steps are skipped and counted, a run of them stops training with a clear error") {
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  CVAE m(c, 1);
  // Poison one parameter: every loss is NaN from now on, so no update may happen.
  m.arena().visit([](const ParamInfo& info, float* v, float*) {
    if (info.name == "decoder.out.bias") v[0] = std::numeric_limits<float>::quiet_NaN();
  });
  const std::vector<float> before(m.arena().values().data(), m.arena().values().data() + m.arena().total());
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "couple-vae";
  o.steps = 50;
  o.max_nonfinite = 4;
  o.log = &log;
  CHECK_THROWS_WITH_AS(train(m, d, o), doctest::Contains("4 non-finite losses or gradients in a row at step 4"), Error);
  // No update was applied: every finite parameter is unchanged.
  for (size_t i = 0; i < before.size(); ++i)
    if (std::isfinite(before[i])) REQUIRE(m.arena().values().data()[i] == before[i]);
}
