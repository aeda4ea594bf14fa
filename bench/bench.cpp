// couplevae_bench: speed benchmark of the couplevae library, the C++ side of
// bench/compare.sh (CPU) and bench/compare_gpu.sh (GPU; the PyTorch side is
// bench/torch_ref.py `bench` / `bench-eval`, with --device cuda on the GPU). This file is
// also compiled by nvcc as couplevae_bench_cuda (bench_cuda.cu), the same program on the
// cuda backend: timings then wait for the device, GEMM rates are cuBLAS's, and the JSON
// adds peak_device_mb (device memory in use at the end, from cudaMemGetInfo).
//
//   couplevae_bench train --model NAME --data DIR [--steps 20] [--warmup 3]
//                         [--threads T] [--seed 0] [--gemm-reps 5]
//   couplevae_bench eval  --model NAME --data DIR [--samples 100]
//                         [--max-sentences 500] [--threads T] [--seed 0]
// NAME is any model of the registry (`couplevae models`); bench/compare.sh runs vae,
// couple-vae, cnn-vae and couple-cnn-vae, the models bench/torch_ref.py has.
//
// Each prints ONE JSON line on stdout (notes go to stderr).
//
// train: the PTB-preset model (vocabulary from DIR/train.txt), W warm-up steps, then N timed
// full training steps on shuffled batches of 32, exactly as the trainer runs them: next batch
// (packing included, like torch_ref's bench which builds its tensors inside the step),
// zero_grad, forward, backward, global-norm clipping, Adam. It reports
//   steps_per_s, tokens_per_s     target tokens = sum(len + 1) of the timed batches
//   peak_rss_mb                   getrusage(RUSAGE_SELF).ru_maxrss
//   flops_per_step                GEMM FLOPs of forward + backward, counted from the shapes of
//                                 the timed batches (see step_flops), averaged per step:
//                                 the Gaussian VAE's and Couple-VAE's GEMMs with their GRU
//                                 or CNN decoder (other models' own extra work is not counted)
//   gemm_gflops                   sustained Eigen float GEMM rate on this machine with the same
//                                 threads, on the output layer's three shapes (forward,
//                                 dX and dW with M = mean target tokens per timed batch,
//                                 K = embed, N = vocab), best of --gemm-reps repetitions each
//   floor_s_per_step              flops_per_step / (gemm_gflops * 1e9): the time the step's
//                                 GEMMs alone would take at that rate
//   s_per_step                    1 / steps_per_s
//   issue_s_per_step              host time inside the step calls of the timed loop (on cuda
//                                 the time to queue the work: near s_per_step means the host
//                                 is the bottleneck, well under it the device)
// --phases N adds "phases_ms": N more steps, each phase waited for and timed alone (batch,
// forward, backward, guard + Adam), mean ms per step. On cuda the JSON's "recurrence" says
// how the GRU recurrence ran: fused (default), composed or persistent, as chosen by
// COUPLEVAE_CUDA_RECURRENCE (backend/cuda/runtime.cuh), and "graphs" what the CUDA Graphs of
// whole steps did (COUPLEVAE_CUDA_GRAPHS=1, backend/cuda/graph.cuh: padded batches; for each
// shape, batch size and longest length, the first step eager, the second captured, later
// ones replayed; give a --warmup long enough for the common shapes to be captured).
// eval: evaluate_nll of a randomly initialised model on the first M test sentences with N
// importance samples (same as torch_ref bench-eval); reports seconds and sentences_per_s.
// --split valid takes the validation sentences instead, --eval-batch-size and --eval-rows
// set Config's evaluation batching (a training run's validation: --split valid --samples 10
// --max-sentences 100000).
//
// Threads: --threads T (default: OMP_NUM_THREADS / omp_get_max_threads()) sets both
// Eigen::setNbThreads and omp_set_num_threads.
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <couplevae/core/eigen.hpp>
#include <nlohmann/json.hpp>

#include <couplevae/couplevae.hpp>
#if defined(__CUDACC__)
#include <couplevae/cuda.cuh>
#endif

using namespace couplevae;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

struct Args {
  std::string cmd, model, data;
  long steps = 20, warmup = 3;
  int threads = 0;  // 0: omp_get_max_threads()
  int samples = 100;
  long max_sentences = 500;
  uint64_t seed = 0;
  int gemm_reps = 5;
  int batch_size = 0;  // 0: the preset's 32
  long phases = 0;     // steps timed phase by phase after the timed run
  std::string split = "test";
  int eval_batch_size = 0, eval_rows = 0;  // 0: the config's (Config::eval_batch(), eval_rows)
};

constexpr const char* usage_text =
    "usage: couplevae_bench train --model NAME --data DIR [--steps N] [--warmup W] "
    "[--threads T] [--seed S] [--gemm-reps R] [--batch-size B] [--phases N]\n"
    "       couplevae_bench eval --model NAME --data DIR [--samples N] "
    "[--max-sentences M] [--threads T] [--seed S] [--split test|valid] [--eval-batch-size N] [--eval-rows R]\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "couplevae_bench: error: %s\n%s", msg.c_str(), usage_text);
  std::exit(2);
}

long parse_long(const std::string& flag, const std::string& v, long lo) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0) usage_error(flag + ": not an integer: '" + v + "'");
  if (x < lo) usage_error(flag + " must be >= " + std::to_string(lo) + " (got " + v + ")");
  return x;
}

Args parse_args(int argc, char** argv) {
  if (argc < 2) usage_error("missing subcommand (train or eval)");
  Args a;
  a.cmd = argv[1];
  if (a.cmd == "-h" || a.cmd == "--help") {
    std::fputs(usage_text, stdout);
    std::exit(0);
  }
  if (a.cmd != "train" && a.cmd != "eval") usage_error("unknown subcommand '" + a.cmd + "' (expected train or eval)");
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error(f + ": missing value (or unknown flag)");
    const std::string v = argv[++i];
    if (f == "--model") a.model = v;
    else if (f == "--data") a.data = v;
    else if (f == "--threads") a.threads = int(parse_long(f, v, 1));
    else if (f == "--seed") a.seed = uint64_t(parse_long(f, v, 0));
    else if (a.cmd == "train" && f == "--steps") a.steps = parse_long(f, v, 1);
    else if (a.cmd == "train" && f == "--warmup") a.warmup = parse_long(f, v, 0);
    else if (a.cmd == "train" && f == "--gemm-reps") a.gemm_reps = int(parse_long(f, v, 1));
    else if (a.cmd == "train" && f == "--batch-size") a.batch_size = int(parse_long(f, v, 1));
    else if (a.cmd == "train" && f == "--phases") a.phases = parse_long(f, v, 0);
    else if (a.cmd == "eval" && f == "--samples") a.samples = int(parse_long(f, v, 1));
    else if (a.cmd == "eval" && f == "--max-sentences") a.max_sentences = parse_long(f, v, 1);
    else if (a.cmd == "eval" && f == "--eval-batch-size") a.eval_batch_size = int(parse_long(f, v, 1));
    else if (a.cmd == "eval" && f == "--eval-rows") a.eval_rows = int(parse_long(f, v, 1));
    else if (a.cmd == "eval" && f == "--split") {
      if (v != "test" && v != "valid") usage_error("--split must be test or valid (got '" + v + "')");
      a.split = v;
    }
    else usage_error("unknown flag '" + f + "' for " + a.cmd);
  }
  if (a.model.empty()) usage_error("--model is required (" + model_name_list() + ")");
  if (a.data.empty()) usage_error("--data is required");
  return a;
}

int setup_threads(int requested) {
#ifdef _OPENMP
  const int t = requested > 0 ? requested : omp_get_max_threads();
  omp_set_num_threads(t);
#else
  const int t = requested > 0 ? requested : 1;
  if (t > 1) std::fprintf(stderr, "couplevae_bench: built without OpenMP, GEMM runs on one thread\n");
#endif
  Eigen::setNbThreads(t);
  return Eigen::nbThreads();
}

// GEMM FLOPs (2*M*N*K each) of one training step on `b`, forward + backward. Every GEMM's
// backward is two GEMMs of the same size (dX and dW), so a step costs 3x its forward.
// Embedding gathers, element-wise work, softmax and the optimizer are not counted. Rows
// are the packed rows (no padding): encoder rows = sum L per direction, decoder rows =
// sum (L + 2) (the [h;h] step, <go>, w_1..w_L), output rows = sum (L + 1). The recurrent
// GEMMs skip step 0, whose state is zero (B rows per GRU direction).
// With the dilated CNN decoder (cnn = true; decoder/dilated_cnn.hpp) the decoder runs on the
// padded layout, N = B (L_max + 2) rows: the 1x1 input conv (2E -> F), per dilation d the
// three convs (F -> F on N rows; the kernel-3 conv, F*3 -> F, and the last 1x1 conv on the
// B (L_max + 2 + 2d) rows that include the BatchNorm tail), and the output layer (F -> V)
// on the output rows.
double step_flops(const Config& c, const Batch& b, bool coupled, bool cnn) {
  const double E = c.embed, H = c.hidden, D = c.dec_hidden(), Z = c.latent, Hm = c.mlp_size(), V = c.vocab_size;
  // Rows: the recurrence runs every row of the packing (a bucketed batch's padding too); the
  // input projections run on the real rows (plus fillers when bucketed, Packing::real_rows),
  // the vocabulary layer on the output rows. (A bucketed batch's dW_hh runs on the real rows
  // too; counted here with the recurrence.)
  auto all_rows = [](const Packing& p) { return double(p.padded ? p.real_rows.size() : size_t(p.rows)); };
  const double nb = b.size(), enc_rows = b.enc.rows, dec_rows = b.dec.rows, out = b.outputs.count();
  const double enc_in = all_rows(b.enc), dec_in = all_rows(b.dec);
  auto g = [](double m, double n, double k) { return 2.0 * m * n * k; };
  // encoder: bidirectional GRU, input projection (E -> 3H) + recurrent (H -> 3H), two directions
  const double encoder = 2.0 * (g(enc_in, 3 * H, E) + g(enc_rows - nb, 3 * H, H));
  const double head = g(nb, Z, 2 * H);                      // one Linear(2H -> Z)
  const double mlp = g(nb, Hm, Z) + g(nb, E, Hm);           // Linear(Z -> Hm), Linear(Hm -> E)
  double decoder = 0;
  if (!cnn) {
    decoder = g(dec_in, 3 * D, 2 * E)           // GRU input projection (2E -> 3D)
              + g(dec_rows - nb, 3 * D, D)      // GRU recurrent (D -> 3D)
              + g(dec_rows - nb, E, D)          // proj Linear(D -> E)
              + g(out, V, E);                   // output Linear(E -> V)
  } else {
    const double F = c.cnn_channels, Tp = b.lengths.front() + 2.0, N = nb * Tp;
    decoder = g(N, F, 2 * E) + g(out, V, F);    // input 1x1 conv, output Linear(F -> V)
    for (int d : c.cnn_dilations) {
      const double NL = nb * (Tp + 2.0 * d);    // with the BatchNorm tail
      decoder += g(N, F, F) + g(NL, F, 3 * F) + g(NL, F, F);
    }
  }
  double fwd = encoder + 2 * head + mlp + decoder;          // mu and log-sigma heads
  if (coupled) fwd += head + mlp + decoder;                 // mu^c head, MLP^c, decoder^c
  return 3.0 * fwd;
}

// Waits for the backend's queued work (timings must include it).
template <class B>
void backend_sync() {
#if defined(__CUDACC__)
  if constexpr (std::is_same_v<B, cuda>) cuda_rt::runtime().sync();
#endif
}
// Peak device memory in MB (cudaMemGetInfo's used memory at the end of the run; 0 on cpu).
template <class B>
double peak_device_mb() {
#if defined(__CUDACC__)
  if constexpr (std::is_same_v<B, cuda>) {
    size_t free = 0, total = 0;
    COUPLEVAE_CUDA(cudaMemGetInfo(&free, &total));
    return double(total - free) / (1024.0 * 1024.0);
  }
#endif
  return 0;
}

struct GemmRate {
  double gflops = 0, fwd = 0, dx = 0, dw = 0;  // combined and per-shape GFLOP/s
  int M = 0, K = 0, N = 0;
};

// Sustained float GEMM rate through ops<B>::gemm (Eigen / cuBLAS) on the output layer's shapes,
// with the layouts nn::Linear uses (row-major, W (N, K)):
//   forward Y (M, N)  = X (M, K) W^T
//   dX      (M, K)   += dY (M, N) W
//   dW      (N, K)   += dY^T X
// Best of `reps` timings per shape; the combined rate is 3 * 2MNK / (sum of the best times).
template <class B>
GemmRate measure_gemm(int M, int K, int N, int reps) {
  GemmRate r;
  r.M = M, r.K = K, r.N = N;
  Rng rng(12345);
  // U(-0.5, 0.5) values, written in place on cpu (no second copy in the peak memory).
  auto fill = [&](Buffer<float, B>& b, size_t n) {
    std::vector<float> staging;
    b.resize(n);
    float* v = b.data();
    if constexpr (!std::is_same_v<B, cpu>) staging.resize(n), v = staging.data();
    rng.uniform(v, n);
    for (size_t i = 0; i < n; ++i) v[i] -= 0.5f;
    if constexpr (!std::is_same_v<B, cpu>) b.from_host(staging.data(), n);
  };
  Buffer<float, B> X, W, Y, dXb, dWb;
  fill(X, size_t(M) * K), fill(W, size_t(N) * K), fill(Y, size_t(M) * N);
  dXb.zeros(M, K);
  dWb.zeros(N, K);
  auto best_of = [&](auto&& f) {
    f();  // warm-up (page faults, Eigen's blocking buffers, cuBLAS's kernel choice)
    backend_sync<B>();
    double best = 1e300;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = Clock::now();
      f();
      backend_sync<B>();
      best = std::min(best, seconds_since(t0));
    }
    return best;
  };
  const double t_fwd = best_of([&] {
    ops<B>::gemm(false, true, M, N, K, 1.f, X.data(), K, W.data(), K, 0.f, Y.data(), N);
  });
  const double t_dx = best_of([&] {
    ops<B>::gemm(false, false, M, K, N, 1.f, Y.data(), N, W.data(), K, 1.f, dXb.data(), K);
  });
  const double t_dw = best_of([&] {
    ops<B>::gemm(true, false, N, K, M, 1.f, Y.data(), N, X.data(), K, 1.f, dWb.data(), K);
  });
  const double f = 2.0 * M * N * K;
  r.fwd = f / t_fwd * 1e-9;
  r.dx = f / t_dx * 1e-9;
  r.dw = f / t_dw * 1e-9;
  r.gflops = 3 * f / (t_fwd + t_dx + t_dw) * 1e-9;
  return r;
}

Dataset load(const Args& a, Config& cfg) {
  CorpusOptions co;
  co.drop_label = cfg.drop_label;
  co.max_len = cfg.max_len;
  Dataset d = load_dataset(a.data, co);
  cfg.vocab_size = int(d.vocab.size());
  cfg.validate();
  return d;
}

template <class B>
int run_train(const Args& a, int threads) {
  Config cfg = model_config(a.model, "ptb");
  if (a.batch_size > 0) cfg.batch_size = a.batch_size;
  Dataset data = load(a, cfg);
  return with_model(a.model, [&]<class M0>() {
    using M = with_backend_t<M0, B>;
    using T = typename M::scalar;
    M model(cfg, a.seed);
    Adam<T, B> adam(model.arena(), cfg);
    Batcher batcher(data.train, cfg.vocab_size, a.seed, cfg.batch_size);
    batcher.set_bucket(step_runner<B>::bucket());  // as the trainer does (graphs on cuda)
    Context<B> ctx(Rng(a.seed).derive(0x747261696eull).seed, true);
    // The trainer's step (train/trainer.hpp train_step): clipping and the skipping of
    // non-finite updates are decided on the backend, so the loop never waits for it.
    StepGuard<B> guard(cfg.clip_norm, std::numeric_limits<int>::max());
    long t = 0;
    auto step = [&](const Batch& batch) { train_step(model, ctx, batch, ++t, adam, guard); };
    for (long i = 0; i < a.warmup; ++i) step(batcher.next());

    long tokens = 0;
    double flops = 0, issue = 0;
    const auto t0 = Clock::now();
    for (long i = 0; i < a.steps; ++i) {
      const auto ti = Clock::now();
      const Batch batch = batcher.next();  // packing is part of the timed step
      step(batch);
      issue += seconds_since(ti);
      tokens += batch.target_tokens();
      flops += step_flops(cfg, batch, M::is_coupled,  // a few multiplications
                          std::is_same_v<typename M::decoder_policy, Decoder<DilatedCNN>>);
    }
    backend_sync<B>();
    const double dt = seconds_since(t0);
    // Phase by phase, each waited for: where a step's time goes. The phases are train_step's
    // (train/trainer.hpp), split so that each can be timed.
    double ph[4] = {0, 0, 0, 0};
    for (long i = 0; i < a.phases; ++i) {
      auto lap = [&](int k, auto&& f) {
        const auto tp = Clock::now();
        f();
        backend_sync<B>();
        ph[k] += seconds_since(tp) * 1e3 / double(a.phases);
      };
      Batch batch;
      lap(0, [&] { batch = batcher.next(); });
      PendingLosses l;
      lap(1, [&] {
        model.zero_grad();
        l = model.forward_async(ctx, batch, ++t);
      });
      lap(2, [&] { model.backward(ctx); });
      lap(3, [&] {
        guard.check(model.arena(), l, t);
        adam.step(model.arena(), learning_rate(model.config(), t), guard.gate());
      });
    }
    const double flops_per_step = flops / double(a.steps);
    const int m_tokens = std::max(1, int(double(tokens) / double(a.steps) + 0.5));
    const GemmRate g = measure_gemm<B>(m_tokens, cfg.embed, cfg.vocab_size, a.gemm_reps);
    const double floor_s = flops_per_step / (g.gflops * 1e9);
    if (const long long skipped = guard.read().skipped)
      std::fprintf(stderr, "couplevae_bench: %lld non-finite steps (update skipped)\n", skipped);
    nlohmann::json j = {{"impl", "couplevae"},
                        {"backend", B::name},
                        {"model", a.model},
                        {"batch_size", cfg.batch_size},
                        {"steps", a.steps},
                        {"warmup", a.warmup},
                        {"steps_per_s", double(a.steps) / dt},
                        {"tokens_per_s", double(tokens) / dt},
                        {"peak_rss_mb", peak_rss_mb()},
                        {"peak_device_mb", peak_device_mb<B>()},
                        {"threads", threads},
                        {"flops_per_step", flops_per_step},
                        {"gemm_gflops", g.gflops},
                        {"gemm_gflops_fwd", g.fwd},
                        {"gemm_gflops_dx", g.dx},
                        {"gemm_gflops_dw", g.dw},
                        {"gemm_shape", {g.M, g.K, g.N}},
                        {"floor_s_per_step", floor_s},
                        {"s_per_step", dt / double(a.steps)},
                        {"issue_s_per_step", issue / double(a.steps)}};
    if (a.phases)
      j["phases_ms"] = {{"batch", ph[0]}, {"forward", ph[1]}, {"backward", ph[2]}, {"guard_adam", ph[3]}};
#if defined(__CUDACC__)
    if constexpr (std::is_same_v<B, cuda>) {
      j["recurrence"] = cuda_rt::runtime().recurrence();
      j["rows_kernel_max"] = cuda_rt::runtime().rows_kernel_max;
      const cuda_rt::GraphStats& gs = cuda_rt::step_graphs().stats;
      j["graphs"] = {{"on", cuda_rt::runtime().step_graphs},
                     {"bucket", step_runner<B>::bucket()},
                     {"eager_steps", gs.eager},
                     {"captures", gs.captures},
                     {"replays", gs.replays},
                     {"patched_nodes", gs.patched},
                     {"fallbacks", gs.fallbacks},
                     {"last_fallback", gs.last_fallback}};
    }
#endif
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    return 0;
  });
}

template <class B>
int run_eval(const Args& a, int threads) {
  Config cfg = model_config(a.model, "ptb");
  if (a.eval_batch_size > 0) cfg.eval_batch_size = a.eval_batch_size;
  if (a.eval_rows > 0) cfg.eval_rows = a.eval_rows;
  Dataset data = load(a, cfg);
  const auto& sentences = a.split == "valid" ? data.valid : data.test;
  return with_model(a.model, [&]<class M0>() {
    using M = with_backend_t<M0, B>;
    M model(cfg, a.seed);
    const auto t0 = Clock::now();
    const NllReport r = evaluate_nll(model, sentences, a.samples, a.seed, size_t(a.max_sentences), cfg.eval_batch());
    backend_sync<B>();
    const double dt = seconds_since(t0);
    nlohmann::json j = {{"impl", "couplevae"},       {"backend", B::name},         {"model", a.model},
                        {"seconds", dt},             {"sentences_per_s", double(r.sentences) / dt},
                        {"sentences", r.sentences},  {"samples", r.samples},
                        {"nll", r.nll},              {"peak_rss_mb", peak_rss_mb()},
                        {"peak_device_mb", peak_device_mb<B>()}, {"split", a.split},
                        {"eval_batch_size", cfg.eval_batch()}, {"eval_rows", cfg.eval_rows},
                        {"threads", threads}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    return 0;
  });
}

}  // namespace

#if !defined(COUPLEVAE_BENCH_BACKEND)
#define COUPLEVAE_BENCH_BACKEND cpu
#endif

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  try {
    using B = COUPLEVAE_BENCH_BACKEND;
#if defined(__CUDACC__)
    cuda_rt::require_device();
#endif
    const int threads = setup_threads(a.threads);
    if (a.cmd == "train") return run_train<B>(a, threads);
    return run_eval<B>(a, threads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "couplevae_bench: error: %s\n", e.what());
    return 2;
  }
}
