// ctest cuda.mock: the host side of the CUDA Graphs of whole steps (backend/cuda/graph.cuh)
// on the stand-in runtime of mock_runtime.cpp, so it runs without a GPU (CI too, where nvcc
// is installed). Kernels do not run here; what is checked is the machinery: which steps are
// eager, captured or replayed, that a replay issues nothing but one graph launch, that
// changed kernel arguments are patched and uploads arrive through the landing area, that a
// step which differs from its capture (another kernel, another cuBLAS call, an allocation, a
// free) or whose graph the driver refuses falls back to an eager run after rewinding, and
// that a whole model's steps replay with the generator where an eager run leaves it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <optional>
#include <set>
#include <sstream>

#include "common.cuh"
#include "mock_runtime.cuh"

using namespace couplevae;
using cvtest::sentences;

namespace {

struct AddConstant {  // x[i] += c (never run by the mock)
  float* x;
  long c;
  COUPLEVAE_HD void operator()(size_t i) const { x[i] += float(c); }
};

const Batch& some_bucketed_batch() {
  static const Batch b = make_batch({{4, 5, 6}, {7}}, 10, 4);
  return b;
}

// Sets the runtime's graph switches for a scope and clears the graphs it made.
struct GraphsOn {
  cuda_rt::Runtime& rt = cuda_rt::runtime();
  const bool graphs = rt.step_graphs, fused = rt.fused_recurrence;
  GraphsOn() {
    rt.step_graphs = true;
    cuda_rt::step_graphs().clear();
    cuda_rt::step_graphs().stats = {};
  }
  ~GraphsOn() {
    rt.step_graphs = graphs, rt.fused_recurrence = fused;
    cuda_rt::step_graphs().clear();
  }
};

}  // namespace

__global__ void probe_kernel(size_t, double, const float*) {}  // never run by the mock

TEST_CASE("a kernel gets its arguments as its parameters' types") {
  const float f = 0;
  size_t n = 0;
  double v = 0;
  const float* p = nullptr;
  int launches = 0;
  mock::on_launch = [&](const void* func, void** args) {
    if (func != reinterpret_cast<const void*>(&probe_kernel)) return;
    ++launches;
    n = *static_cast<const size_t*>(args[0]);
    v = *static_cast<const double*>(args[1]);
    p = *static_cast<const float* const*>(args[2]);
  };
  // an int for the size_t and a float for the double: cudaLaunchKernel reads each argument with
  // its parameter's size, so unconverted they would pass the bytes beside them
  cuda_rt::launch_kernel(&probe_kernel, dim3(1), dim3(1), 0, "probe", -1 + 8, 2.5f, &f);
  mock::on_launch = nullptr;
  CHECK(launches == 1);
  CHECK(n == 7);
  CHECK(v == 2.5);
  CHECK(p == &f);
}

TEST_CASE("a step is eager, then captured, then replayed: one graph launch, patched arguments, uploads arrive") {
  GraphsOn on;
  Buffer<int32_t, cuda> ids;
  Buffer<float, cuda> x;
  int rewinds = 0;
  for (int k = 0; k < 6; ++k) {
    std::vector<int32_t> host(37);
    for (int i = 0; i < 37; ++i) host[i] = k * 100 + i;
    const mock::Counters before = mock::counters;
    const cuda_rt::GraphStats stats_before = cuda_rt::step_graphs().stats;
    step_runner<cuda>::run(
        &ids, nullptr, some_bucketed_batch(),
        [&] {
          ids.from_host(host.data(), host.size());
          x.zeros(1, 37);
          launch<cuda>::for_each(37, AddConstant{x.data(), k < 4 ? 1 : k});
        },
        [&] { ++rewinds; });
    CAPTURE(k);
    CHECK(ids.to_host() == host);  // through the landing area and the graph's copy when replayed
    const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
    CHECK(mock::counters.illegal_in_capture == before.illegal_in_capture);
    if (k == 0) {
      CHECK(s.eager == stats_before.eager + 1);
      CHECK(mock::counters.eager_launches == before.eager_launches + 1);
    } else if (k == 1) {
      CHECK(s.captures == stats_before.captures + 1);
      CHECK(mock::counters.graph_launches == before.graph_launches + 1);
      CHECK(mock::counters.eager_launches == before.eager_launches);
    } else {
      CHECK(s.replays == stats_before.replays + 1);
      CHECK(mock::counters.graph_launches == before.graph_launches + 1);
      CHECK(mock::counters.eager_launches == before.eager_launches);
      CHECK(mock::counters.uploads == before.uploads + 1);  // the landing area, in one copy
      // the constant changes at k = 4 and 5: exactly those replays patch the kernel's node
      CHECK(mock::counters.patches == before.patches + (k >= 4 ? 1 : 0));
    }
  }
  CHECK(rewinds == 0);
  CHECK(cuda_rt::step_graphs().stats.fallbacks == 0);
}

TEST_CASE("a step that uploads more than the landing area holds is captured again with a larger one; other keys start there") {
  GraphsOn on;
  Buffer<int32_t, cuda> ids;
  std::vector<int32_t> host(100000);  // 400 KB: more than the first landing area (256 KB)
  int keys[2];
  for (int key = 0; key < 2; ++key)
    for (int k = 0; k < 4; ++k) {
      for (size_t i = 0; i < host.size(); ++i) host[i] = int32_t(i) + 7 * k + key;
      const cuda_rt::GraphStats before = cuda_rt::step_graphs().stats;
      step_runner<cuda>::run(&keys[key], nullptr, some_bucketed_batch(), [&] { ids.from_host(host.data(), host.size()); },
                             [] {});
      CAPTURE(key);
      CAPTURE(k);
      CHECK(ids.to_host() == host);
      const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
      if (key == 0 && k == 1) {  // the capture overflows: eager instead
        CHECK(s.fallbacks == before.fallbacks + 1);
        CHECK(s.last_fallback.find("more than the landing area") != std::string::npos);
      }
      if (key == 0 && k == 2) CHECK(s.captures == before.captures + 1);
      if (key == 1 && k == 1) CHECK(s.captures == before.captures + 1);  // the area another key needed
      if (k == 3 || (key == 1 && k == 2)) CHECK(s.replays == before.replays + 1);
    }
  CHECK(cuda_rt::step_graphs().stats.fallbacks == 1);
}

TEST_CASE("a replay that meets another cuBLAS call rewinds, runs eagerly and captures again") {
  GraphsOn on;
  Buffer<float, cuda> a, c;
  a.zeros(4, 4);
  c.zeros(4, 4);
  int rewinds = 0;
  for (int k = 0; k < 6; ++k) {
    const float alpha = k < 3 ? 1.0f : 2.0f;  // the GEMM's alpha changes at k = 3
    const cuda_rt::GraphStats before = cuda_rt::step_graphs().stats;
    const size_t gemms = mock::counters.eager_gemms;
    step_runner<cuda>::run(
        &a, nullptr, some_bucketed_batch(),
        [&] { ops<cuda>::gemm(false, false, 4, 4, 4, alpha, a.data(), 4, a.data(), 4, 0.0f, c.data(), 4); },
        [&] { ++rewinds; });
    const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
    CAPTURE(k);
    if (k == 3) {
      CHECK(s.fallbacks == before.fallbacks + 1);
      CHECK(mock::counters.eager_gemms == gemms + 1);  // run eagerly instead
      CHECK(rewinds == 1);
      CHECK(s.last_fallback.find("cuBLAS") != std::string::npos);
    }
    if (k == 4) CHECK(s.captures == before.captures + 1);  // captured again, with the new alpha
    if (k == 5) CHECK(s.replays == before.replays + 1);
  }
}

TEST_CASE("a step that allocates device memory is never captured; after repeated tries it stays eager") {
  GraphsOn on;
  int rewinds = 0;
  for (int k = 0; k < 8; ++k) {
    const size_t illegal = mock::counters.illegal_in_capture;
    step_runner<cuda>::run(
        &rewinds, nullptr, some_bucketed_batch(),
        [&] {
          Buffer<float, cuda> scratch;  // a fresh allocation every step
          scratch.zeros(3, 5);
        },
        [&] { ++rewinds; });
    CHECK(mock::counters.illegal_in_capture == illegal);  // refused before the runtime saw it
  }
  const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
  CHECK(s.captures == 0);
  CHECK(s.replays == 0);
  CHECK(s.fallbacks == 4);  // tried after the warm-up step, then given up
  CHECK(s.eager == 8);
  CHECK(rewinds == 4);
  CHECK(s.last_fallback.find("allocating device memory") != std::string::npos);
}

TEST_CASE("a graph the driver refuses to instantiate leaves its key eager; a replay that frees device memory falls back") {
  GraphsOn on;
  Buffer<float, cuda> x;
  std::optional<Buffer<float, cuda>> extra;
  extra.emplace();
  extra->zeros(2, 2);
  int keys[2], rewinds = 0;
  for (int key = 0; key < 2; ++key)
    for (int k = 0; k < 6; ++k) {
      if (key == 0 && k == 1) mock::failing_instantiations = 1;
      const cuda_rt::GraphStats before = cuda_rt::step_graphs().stats;
      const size_t graph_launches = mock::counters.graph_launches;
      step_runner<cuda>::run(
          &keys[key], nullptr, some_bucketed_batch(),
          [&] {
            x.zeros(1, 9);
            launch<cuda>::for_each(9, AddConstant{x.data(), k});
            if (key == 1 && k == 3) extra.reset();  // the graph could hold its address
          },
          [&] { ++rewinds; });
      CAPTURE(key);
      CAPTURE(k);
      const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
      if (key == 0) {
        CHECK(s.captures == 0);  // not a mismatch of the step: the key is not tried again
        if (k == 1) CHECK(s.last_fallback.find("could not be instantiated") != std::string::npos);
      }
      if (key == 1 && k == 3) {
        CHECK(s.fallbacks == before.fallbacks + 1);
        CHECK(mock::counters.graph_launches == graph_launches);  // no launch of the stale graph
        CHECK(s.last_fallback.find("freed during the step") != std::string::npos);
      }
    }
  CHECK(mock::failing_instantiations == 0);
  const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
  CHECK(s.fallbacks == 2);
  CHECK(rewinds == 2);
  CHECK(s.captures == 2);  // key 1's, at k = 1 and again at k = 4
}

TEST_CASE_TEMPLATE("whole training steps replay with the generator where eager steps leave it", M, models::LM,
                   Coupled<models::VAE>, Coupled<models::VMFVAE>, models::CNNVAE, Coupled<models::WAENF>) {
  using Mc = with_backend_t<M, cuda>;
  const int V = 40, steps = 40;
  Config cfg = Config::preset("ptb");
  cfg.vocab_size = V;
  cfg.embed = 8;
  cfg.hidden = 6;
  cfg.latent = 4;
  cfg.cnn_channels = 8;
  cfg.batch_size = 5;
  cfg.dropout = 0.3;
  const auto train = sentences(V, 23, 3);
  // the generator's position after each step, and what the graphs did
  auto run = [&](bool graphs) {
    GraphsOn on;
    cuda_rt::runtime().step_graphs = graphs;
    Mc model(cfg, 1);
    Adam<float, cuda> adam(model.arena(), cfg);
    StepGuard<cuda> guard(cfg.clip_norm, 20);
    Batcher batches(train, V, 9, cfg.batch_size);
    batches.set_bucket(4);
    Context<cuda> ctx(2, true);
    std::vector<uint64_t> positions;
    size_t replays = 0, replay_patches = 0;
    for (long t = 1; t <= steps; ++t) {
      if (t == steps / 2) cuda_rt::runtime().fused_recurrence = false;  // other kernels from here
      const Batch b = batches.next();
      const mock::Counters before = mock::counters;
      const size_t replayed = cuda_rt::step_graphs().stats.replays;
      train_step(model, ctx, b, t, adam, guard);
      positions.push_back(ctx.rng.position);
      CHECK(mock::counters.illegal_in_capture == before.illegal_in_capture);
      if (cuda_rt::step_graphs().stats.replays > replayed) {  // this step was a replay
        ++replays;
        replay_patches += mock::counters.patches - before.patches;
        CHECK(mock::counters.eager_launches == before.eager_launches);
        CHECK(mock::counters.eager_gemms == before.eager_gemms);
        CHECK(mock::counters.graph_launches == before.graph_launches + 1);
        CHECK(mock::counters.mallocs == before.mallocs);
      }
    }
    const cuda_rt::GraphStats stats = cuda_rt::step_graphs().stats;
    return std::tuple(positions, stats, replays, replay_patches);
  };
  const auto [eager_positions, eager_stats, r0, p0] = run(false);
  const auto [positions, stats, replays, patches] = run(true);
  CHECK(positions == eager_positions);
  CHECK(eager_stats.captures == 0);
  MESSAGE("eager " << stats.eager << ", captures " << stats.captures << ", replays " << stats.replays
                   << ", fallbacks " << stats.fallbacks << " (" << stats.last_fallback << "), patched nodes per replay "
                   << double(patches) / double(std::max<size_t>(replays, 1)));
  CHECK(stats.captures >= 3);
  CHECK(stats.replays >= 10);
  CHECK(stats.replays == replays);
  CHECK(stats.eager + stats.captures + stats.replays == size_t(steps));
  // the recurrence switch: each bucket's first replay after it falls back once at most
  CHECK(stats.fallbacks <= 4);
  if (stats.fallbacks) CHECK(stats.last_fallback.find("kernel") != std::string::npos);
  CHECK(patches > 0);  // noise positions, the step number and token counts change every step
}

TEST_CASE("the persistent recurrence's cooperative launches replay as captured") {
  using Mc = with_backend_t<Coupled<models::VAE>, cuda>;
  GraphsOn on;
  cuda_rt::runtime().persistent_recurrence = true;
  struct Off {
    ~Off() { cuda_rt::runtime().persistent_recurrence = false; }
  } off;
  Config cfg = Config::preset("ptb");
  cfg.vocab_size = 30;
  cfg.embed = 8, cfg.hidden = 6, cfg.latent = 4, cfg.batch_size = 4;
  Mc model(cfg, 1);
  Adam<float, cuda> adam(model.arena(), cfg);
  StepGuard<cuda> guard(cfg.clip_norm, 20);
  Context<cuda> ctx(2, true);
  const size_t passes = cuda_rt::runtime().persistent_passes;
  const Batch b = make_batch({{4, 5, 6, 7}, {8, 9}, {10}, {11, 12, 13, 14}}, 30, 1);
  for (long t = 1; t <= 6; ++t) train_step(model, ctx, b, t, adam, guard);
  const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
  CHECK(s.captures == 1);
  CHECK(s.replays == 4);
  CHECK(s.fallbacks == 0);
  // 4 passes forward and 4 backward a step, replays included (the graph runs them)
  CHECK(cuda_rt::runtime().persistent_passes == passes + 6 * 8);
}

TEST_CASE("the trainer with graphs: validations allocate, so the next steps capture again") {
  using Mc = with_backend_t<Coupled<models::VAE>, cuda>;
  GraphsOn on;
  Dataset d;
  std::vector<std::vector<std::string>> text;
  Rng r(5);
  for (int i = 0; i < 24; ++i) {
    std::vector<std::string> s;
    for (int k = 0, n = 1 + int(r.below(6)); k < n; ++k) s.push_back(std::string(1, char('a' + r.below(6))));
    text.push_back(s);
  }
  d.vocab = Vocab::build(text);
  d.train = d.vocab.encode_all(text);
  d.valid = d.vocab.encode_all({{"a", "b"}, {"c"}});
  d.test = d.valid;
  Config cfg = Config::preset("ptb");
  cfg.vocab_size = int(d.vocab.size());
  cfg.embed = 8, cfg.hidden = 6, cfg.latent = 4, cfg.batch_size = 3;
  cfg.valid_every = 15;
  cfg.valid_samples = 2;
  Mc model(cfg, 1);
  std::ostringstream log;
  TrainOptions o;
  o.steps = 45;
  o.log = &log;
  o.log_every = 0;
  const TrainResult res = train(model, d, o);
  CHECK(res.steps == 45);
  const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
  MESSAGE("eager " << s.eager << ", captures " << s.captures << ", replays " << s.replays << ", fallbacks "
                   << s.fallbacks);
  CHECK(s.eager + s.captures + s.replays == 45);
  CHECK(s.replays > 0);
  CHECK(s.fallbacks == 0);
  // The validations at steps 15 and 30 allocate (evaluation buffers), which invalidates every
  // graph: more captures than shapes. The shapes: the trainer's batches, made again.
  Batcher same(d.train, cfg.vocab_size, o.seed, cfg.batch_size);
  same.set_bucket(1);
  std::set<std::pair<int, int>> shapes;
  for (int t = 0; t < 45; ++t) {
    const Batch b = same.next();
    shapes.insert({b.size(), b.lengths.front()});
  }
  CAPTURE(shapes.size());
  CHECK(s.captures > shapes.size());
}

TEST_CASE("an error inside a replayed step comes out of the eager run that replaces it") {
  GraphsOn on;
  Buffer<float, cuda> x;
  x.zeros(1, 8);
  for (int k = 0; k < 5; ++k) {
    auto step = [&] {
      launch<cuda>::for_each(8, AddConstant{x.data(), 1});
      require(k != 3, "step 3 is refused");
    };
    if (k == 3)
      CHECK_THROWS_WITH_AS(step_runner<cuda>::run(&x, nullptr, some_bucketed_batch(), step, [] {}),
                           doctest::Contains("step 3 is refused"), Error);
    else
      step_runner<cuda>::run(&x, nullptr, some_bucketed_batch(), step, [] {});
  }
  const cuda_rt::GraphStats& s = cuda_rt::step_graphs().stats;
  CHECK(s.captures == 1);
  CHECK(s.replays == 1);  // k = 2; from k = 3 on the shape stays eager
  CHECK(s.fallbacks == 1);
  CHECK(s.last_fallback.find("step 3 is refused") != std::string::npos);
}
