// Lagging-VAE (train/aggressive.hpp): Adam's parameter groups, the inner loop's stop rule,
// the MI schedule, one aggressive step against the same updates made by hand, and the
// trainer's aggressive phase (epoch-end MI, resume = uninterrupted run bit for bit).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <couplevae/couplevae.hpp>

#include "fixtures.hpp"
#include "temp_dir.hpp"

using namespace couplevae;

namespace {

Config lagging_config(int vocab) {
  Config c = fixtures::tiny_sizes(model_config("lagging-vae", "ptb"), vocab);
  c.valid_every = 5;
  c.valid_samples = 3;
  c.kl_start = 0;
  return c;
}

Dataset lagging_data() { return fixtures::tiny_corpus({{"a", "b"}, {"c", "d", "a"}, {"b"}, {"d", "c"}}); }

template <class T, class B>
std::vector<T> values(Arena<T, B>& ar) {
  return ar.values().to_host();
}

bool same_range(const std::vector<float>& a, const std::vector<float>& b, size_t begin, size_t end) {
  return std::equal(a.begin() + std::ptrdiff_t(begin), a.begin() + std::ptrdiff_t(end), b.begin() + std::ptrdiff_t(begin));
}

}  // namespace

TEST_CASE("lagging: the inference range is the encoder and the posterior heads, and nothing else") {
  Config c = lagging_config(12);
  for (int coupled = 0; coupled < 2; ++coupled) {
    CAPTURE(coupled);
    auto check = [&](auto& model) {
      const ParamRange r = inference_range(model.arena());
      int inside = 0;
      for (const auto& p : model.arena().infos()) {
        const bool in = p.offset >= r.begin && p.offset + p.size <= r.end;
        const bool should = p.name.starts_with("encoder.") || p.name.starts_with("posterior.");
        CHECK_MESSAGE(in == should, p.name);
        inside += in;
      }
      CHECK(inside >= 4);  // both directions of the encoder GRU, the mu and log-sigma heads
    };
    if (coupled) {
      Coupled<models::VAE> m(c, 1);
      check(m);
    } else {
      models::VAE m(c, 1);
      check(m);
    }
  }
}

TEST_CASE("lagging: Adam's groups update their own elements with their own clocks") {
  Config c = lagging_config(12);
  models::VAE a(c, 3), b(c, 3);
  const Batch batch = make_batch({{4, 5, 6}, {7, 8}, {9, 4, 5, 10}}, c.vocab_size);
  Adam<float> plain(a.arena(), c), grouped(b.arena(), c);
  const ParamRange r = inference_range(b.arena());
  grouped.split(r);
  CHECK(grouped.is_split());
  CHECK_THROWS_WITH_AS(plain.step(a.arena(), 1e-3, nullptr, ParamGroup::inference), doctest::Contains("split() first"),
                       Error);
  auto grads = [&](models::VAE& m) {
    Context<> ctx(7);
    m.zero_grad();
    m.forward(ctx, batch, 3);
    m.backward(ctx);
  };
  // Both groups stepping together are exactly one Adam (same clocks, same updates).
  for (int i = 0; i < 3; ++i) {
    grads(a);
    grads(b);
    plain.step(a.arena(), 1e-2);
    grouped.step(b.arena(), 1e-2);
  }
  CHECK(values(a.arena()) == values(b.arena()));
  CHECK(grouped.steps() == 3);
  CHECK(grouped.inference_steps() == 3);
  // The inference group alone: only its elements move; its clock alone advances.
  auto before = values(b.arena());
  grads(b);
  grouped.step(b.arena(), 1e-2, nullptr, ParamGroup::inference);
  auto after = values(b.arena());
  CHECK(same_range(before, after, 0, r.begin));
  CHECK(same_range(before, after, r.end, after.size()));
  CHECK_FALSE(same_range(before, after, r.begin, r.end));
  CHECK(grouped.steps() == 3);
  CHECK(grouped.inference_steps() == 4);
  // The generative group alone: the complement.
  before = after;
  grads(b);
  grouped.step(b.arena(), 1e-2, nullptr, ParamGroup::generative);
  after = values(b.arena());
  CHECK(same_range(before, after, r.begin, r.end));
  CHECK_FALSE(same_range(before, after, 0, r.begin));
  CHECK_FALSE(same_range(before, after, r.end, after.size()));
  CHECK(grouped.steps() == 4);
  CHECK(grouped.inference_steps() == 4);
  // Both clocks travel in a training checkpoint (made different first).
  grads(b);
  grouped.step(b.arena(), 1e-2, nullptr, ParamGroup::inference);
  after = values(b.arena());
  CHECK(grouped.inference_steps() == 5);
  TempDir tmp;
  TrainState st;
  save_checkpoint(tmp / "g.safetensors", b, "lagging-vae", Vocab::from_words({"<pad>", "<go>", "<eos>", "<unk>", "a", "b", "c", "d", "e", "f", "g", "h"}),
                  &grouped, &st);
  models::VAE fresh(c, 9);
  Adam<float> loaded(fresh.arena(), c);
  loaded.split(inference_range(fresh.arena()));
  load_checkpoint(tmp / "g.safetensors", fresh, &loaded);
  CHECK(loaded.steps() == 4);
  CHECK(loaded.inference_steps() == 5);
  CHECK(values(fresh.arena()) == after);
}

TEST_CASE("lagging: the phase's state round-trips through train_state, and impossible ones are refused") {
  TrainState st;
  st.step = 40;
  st.has_aggressive = true;
  st.aggressive = {.on = false, .epochs = 3, .last_mi = 0.25, .inner_steps = 812, .until = 30, .epoch = 2, .position = 17};
  const TrainState back = TrainState::from_json(st.to_json());
  CHECK(back.has_aggressive);
  CHECK_FALSE(back.aggressive.on);
  CHECK(back.aggressive.epochs == 3);
  CHECK(back.aggressive.last_mi == 0.25);
  CHECK(back.aggressive.inner_steps == 812);
  CHECK(back.aggressive.until == 30);
  CHECK(back.aggressive.epoch == 2);
  CHECK(back.aggressive.position == 17);
  // Written before `until` existed: the end is unknown (0), the rest loads.
  nlohmann::json old = st.to_json();
  old["aggressive"].erase("until");
  CHECK(TrainState::from_json(old).aggressive.until == 0);
  // An end after the checkpoint's step, or an end while the phase is still on, cannot be.
  nlohmann::json later = st.to_json();
  later["aggressive"]["until"] = 41;
  CHECK_THROWS_WITH_AS(TrainState::from_json(later), doctest::Contains("impossible aggressive phase"), Error);
  nlohmann::json on = st.to_json();
  on["aggressive"]["on"] = true;
  CHECK_THROWS_WITH_AS(TrainState::from_json(on), doctest::Contains("impossible aggressive phase"), Error);
}

TEST_CASE("lagging: the inner loop's stop rule (He et al.: per-token loss over windows of 15)") {
  // Falling loss: never stops.
  BurnMonitor falling(15);
  bool stopped = false;
  for (int k = 1; k <= 99; ++k) stopped = stopped || falling.add(100.0 - k, 10);
  CHECK_FALSE(stopped);
  // Constant per-token loss: the second window is not lower, so the loop stops at its end.
  BurnMonitor flat(15);
  int stop_at = 0;
  for (int k = 1; k <= 99 && !stop_at; ++k)
    if (flat.add(20.0, 10)) stop_at = k;
  CHECK(stop_at == 30);
  // The rule is per token: more tokens at the same total loss is a lower loss.
  BurnMonitor per_token(2);
  CHECK_FALSE(per_token.add(10, 5));
  CHECK_FALSE(per_token.add(10, 5));  // window 1: 20 / 10 = 2
  CHECK_FALSE(per_token.add(10, 6));
  CHECK_FALSE(per_token.add(10, 6));  // window 2: 20 / 12 < 2
  CHECK_FALSE(per_token.add(30, 6));
  CHECK(per_token.add(30, 6));        // window 3: 60 / 12 = 5, higher: stop
}

TEST_CASE("lagging: the phase ends the first time the epoch-end MI falls") {
  TrainState::Aggressive s;
  AggressiveSchedule sched{s};
  CHECK(sched.end_epoch(1.0));
  CHECK(sched.end_epoch(2.5));
  CHECK(sched.end_epoch(2.5));  // equal is not a fall
  CHECK_FALSE(sched.end_epoch(2.4));
  CHECK_FALSE(s.on);
  CHECK(s.epochs == 4);
  CHECK_FALSE(sched.end_epoch(9.0));  // once off, off for good
  CHECK(s.epochs == 4);
}

TEST_CASE("lagging: one aggressive step = encoder updates on the inner batches, then one decoder update on x_t") {
  const Dataset d = lagging_data();
  Config c = lagging_config(int(d.vocab.size()));
  c.aggressive_inner = 3;
  c.aggressive_window = 100;  // no early stop: exactly 3 inner updates
  const Batch x = make_batch(d.train, c.vocab_size);
  models::VAE a(c, 4), b(c, 4);
  Adam<float> adam_a(a.arena(), c), adam_b(b.arena(), c);
  adam_a.split(inference_range(a.arena()));
  adam_b.split(inference_range(b.arena()));
  StepGuard<cpu> guard_a(c.clip_norm, 5), inner_a(c.clip_norm, 5), guard_b(c.clip_norm, 5);
  Batcher inner_batches_a(d.train, c.vocab_size, 11, c.batch_size), inner_batches_b(d.train, c.vocab_size, 11, c.batch_size);
  Context<> ctx_a(21), ctx_b(21);
  const long t = 4;
  const int n = aggressive_step(a, ctx_a, x, t, adam_a, guard_a, inner_a, inner_batches_a);
  CHECK(n == 3);
  CHECK(adam_a.inference_steps() == 3);
  CHECK(adam_a.steps() == 1);
  // By hand: x, then two batches of the inner stream, each moving the inference group only;
  // then x again for the generative group.
  Batch drawn[2] = {inner_batches_b.next(), inner_batches_b.next()};
  const Batch* xs[3] = {&x, &drawn[0], &drawn[1]};
  auto update = [&](const Batch& batch, ParamGroup g) {
    b.zero_grad();
    b.forward(ctx_b, batch, t);
    b.backward(ctx_b);
    const double norm = clip_grad_norm(b.arena(), c.clip_norm);
    CHECK(std::isfinite(norm));
    adam_b.step(b.arena(), learning_rate(c, t), nullptr, g);
  };
  for (const Batch* p : xs) update(*p, ParamGroup::inference);
  update(x, ParamGroup::generative);
  const auto va = values(a.arena()), vb = values(b.arena());
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) worst = std::max(worst, double(std::abs(va[i] - vb[i])));
  CHECK(worst < 1e-6);  // clipping by the guard's factor vs clip_grad_norm: float rounding only
  CHECK(inner_batches_a.position() == inner_batches_b.position());
}

TEST_CASE("lagging: the inner loop stops only at a window's end or at the cap") {
  const Dataset d = lagging_data();
  Config c = lagging_config(int(d.vocab.size()));
  models::VAE m(c, 6);
  Adam<float> adam(m.arena(), c);
  adam.split(inference_range(m.arena()));
  StepGuard<cpu> guard(c.clip_norm, 5), inner_guard(c.clip_norm, 5);
  Batcher inner(d.train, c.vocab_size, 3, c.batch_size);
  Context<> ctx(2);
  Batcher outer(d.train, c.vocab_size, 4, c.batch_size);
  long total = 0;
  for (long t = 1; t <= 3; ++t) {
    const int n = aggressive_step(m, ctx, outer.next(), t, adam, guard, inner_guard, inner);
    CAPTURE(n);
    CHECK((n % c.aggressive_window == 0 || n == c.aggressive_inner));
    CHECK(n >= c.aggressive_window);
    total += n;
  }
  CHECK(adam.inference_steps() == total);
  CHECK(adam.steps() == 3);
}

TEST_CASE("lagging: the trainer's aggressive phase, its log, and resume = uninterrupted run bit for bit") {
  TempDir tmp;
  const Dataset d = lagging_data();
  Config c = lagging_config(int(d.vocab.size()));
  c.aggressive_inner = 20;
  c.aggressive_window = 5;
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "couple-lagging-vae";
  o.seed = 3;
  o.log_every = 4;
  o.log = &log;
  o.out_dir = tmp / "full";
  o.steps = 12;
  Coupled<models::VAE> full(c, 5);
  const TrainResult r = train(full, d, o);
  CHECK(r.steps == 12);
  CHECK(r.inner_updates >= 5);
  // 9 sentences in batches of 4: epochs end at steps 3, 6, 9, 12 while the phase is on.
  CHECK(log.str().find("aggressive: epoch end at step 3, valid MI") != std::string::npos);
  CHECK(log.str().find("encoder updates/step") != std::string::npos);
  // The step the log names as the phase's end is the one the result reports.
  const std::string text = log.str();
  const size_t end_line = text.find("the phase ends");
  REQUIRE(end_line != std::string::npos);
  const size_t at = text.rfind("epoch end at step ", end_line);
  REQUIRE(at != std::string::npos);
  CHECK(r.aggressive_until == std::stol(text.substr(at + 18)));
  // Interrupted at step 10 (the last checkpoint) and resumed to 12.
  o.out_dir = tmp / "part";
  o.steps = 10;
  Coupled<models::VAE> part(c, 5);
  train(part, d, o);
  const CheckpointInfo info = read_checkpoint_info(tmp / "part/last.safetensors");
  CHECK(info.state.has_aggressive);
  CHECK((info.state.aggressive.epochs == 2 || info.state.aggressive.epochs == 3));  // the phase ended at 6 (two epoch ends) or 9 (three)
  TrainOptions o2 = o;
  o2.steps = 12;
  o2.resume = tmp / "part/last.safetensors";
  Coupled<models::VAE> resumed(c, 99);
  const TrainResult r2 = train(resumed, d, o2);
  CHECK(r2.inner_updates == r.inner_updates);
  // The phase ended before the step-10 checkpoint: the resumed run restores where.
  CHECK(r.aggressive_until < 10);
  CHECK(r2.aggressive_until == r.aggressive_until);
  CHECK(values(full.arena()) == values(resumed.arena()));
  // A plain run cannot resume an aggressive one.
  Config plain = c;
  plain.aggressive = false;
  Coupled<models::VAE> other(plain, 5);
  TrainOptions o3 = o2;
  o3.out_dir = tmp / "other";
  CHECK_THROWS_WITH_AS(train(other, d, o3), doctest::Contains("is an aggressive (Lagging-VAE) run"), Error);
}

TEST_CASE("lagging: models without a stochastic posterior are refused, naming the reason") {
  const Dataset d = lagging_data();
  Config c = lagging_config(int(d.vocab.size()));
  models::DAE dae(c, 1);
  TrainOptions o;
  o.model_name = "dae";
  o.steps = 2;
  std::ostringstream log;
  o.log = &log;
  CHECK_THROWS_WITH_AS(train(dae, d, o), doctest::Contains("cannot train aggressively"), Error);
  Dataset no_valid = d;
  no_valid.valid.resize(1);
  models::VAE vae(c, 1);
  o.model_name = "lagging-vae";
  CHECK_THROWS_WITH_AS(train(vae, no_valid, o), doctest::Contains("at least 2 validation sentences"), Error);
}
