// cli_args.hpp: the command line of the couplevae tool, parsed and checked without doing
// any work, so that the tool (couplevae_cli.cpp) and the command-line fuzz target
// (fuzz/fuzz_cli.cpp) share one definition.
//
//   CommandLine cl;
//   if (int rc = cl.parse(argc, argv); rc >= 0) return rc;   // help (0) or a bad flag (2)
//   if (*cl.train_cmd) { Config c = train_config(cl.train, vocab_size); ... }
//
// Every value is checked here before any file is read: impossible values fail with a
// couplevae::Error naming the flag.
#pragma once
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <couplevae/config.hpp>
#include <couplevae/core/format.hpp>
#include <couplevae/model/registry.hpp>
#include <couplevae/train/trainer.hpp>

namespace couplevae::cli {

struct TrainArgs {
  std::string model, data, preset = "ptb", out, resume, coupling, backend = "cpu";
  double beta = 0;
  int cnn_channels = 0;
  std::vector<int> dilations;
  long steps = -1;
  uint64_t seed = 0;
  double lambda_c = -1;
  int embed = 0, hidden = 0, latent = 0, batch_size = 0, valid_every = 0, kl_start = -1, kl_anneal_steps = 0,
      log_every = 100, max_nonfinite = 20, eval_batch_size = 0, eval_rows = 0;
  long valid_max_sentences = -1;
  bool overwrite = false, aggressive = false;
  long track_every = 0, track_sentences = 200;
  // Flags given on the command line are applied whatever their value, so impossible
  // values reach Config::validate and fail there instead of being ignored.
  CLI::App* cmd = nullptr;
  bool given(const char* flag) const { return cmd && cmd->count(flag) > 0; }
};

struct EvalArgs {
  std::string checkpoint, data, split = "test", metrics, json_out, backend = "cpu";
  int samples = 100, mi_samples = 100, bleu_samples = 10, dist_samples = 3200;
  int eval_batch_size = 0, eval_rows = 0;  // 0: the checkpoint's
  long max_sentences = -1;
  uint64_t seed = 0;
  bool json = false;
};

struct ReportArgs {
  std::vector<std::string> runs;
  std::string out = "report.md", plot;
  bool squared = false;
};

struct SampleArgs {
  std::string checkpoint, backend = "cpu";
  int n = 10, max_len = 200;
  double temperature = 0;
  uint64_t seed = 0;
};

struct InterpolateArgs {
  std::string checkpoint, a, b, backend = "cpu";
};

struct CorpusArgs {
  std::string out;
  uint64_t seed = 0;
  int train_lines = 3000;
};

inline const std::vector<std::string> all_metrics = {"nll", "mi", "bleu", "dist", "grad"};

// The model's configuration from its preset and the given flags, validated for a corpus
// whose vocabulary has vocab_size words.
inline Config train_config(const TrainArgs& a, int vocab_size) {
  Config cfg = model_config(a.model, a.preset);
  if (a.given("--lambda-c")) cfg.lambda_c = a.lambda_c;
  if (!a.coupling.empty()) cfg.coupling = a.coupling;
  if (a.given("--beta")) cfg.beta = a.beta;
  if (a.given("--cnn-channels")) cfg.cnn_channels = a.cnn_channels;
  if (!a.dilations.empty()) cfg.cnn_dilations = a.dilations;
  if (a.given("--embed")) cfg.embed = a.embed;
  if (a.given("--hidden")) cfg.hidden = a.hidden;
  if (a.given("--latent")) cfg.latent = a.latent;
  if (a.given("--batch-size")) cfg.batch_size = a.batch_size;
  if (a.given("--valid-every")) cfg.valid_every = a.valid_every;
  if (a.given("--eval-batch-size")) cfg.eval_batch_size = a.eval_batch_size;
  if (a.given("--eval-rows")) cfg.eval_rows = a.eval_rows;
  if (a.given("--kl-start")) cfg.kl_start = a.kl_start;
  if (a.given("--kl-anneal-steps")) cfg.kl_anneal_steps = a.kl_anneal_steps;
  if (a.given("--steps")) cfg.steps = a.steps;
  if (a.aggressive) cfg.aggressive = true;
  if (cfg.aggressive)
    with_model(a.model, [&]<class M>() {
      if constexpr (!detail::mi_applicable<M>())
        throw Error("train: '" + a.model + "' cannot train aggressively (--aggressive, Lagging-VAE): the phase ends by "
                    "the posterior's mutual information, and this model has no stochastic posterior");
    });
  require(cfg.steps >= 1, "--steps must be >= 1");
  cfg.vocab_size = vocab_size;
  cfg.validate();
  return cfg;
}

// The training loop's options from the flags (the folder is not touched here).
inline TrainOptions train_options(const TrainArgs& a) {
  require(a.log_every >= 0, "--log-every must be >= 0 (0: no progress lines)");
  require(a.max_nonfinite >= 1, "--max-nonfinite must be >= 1");
  require(a.track_every >= 0, "--track-every must be >= 0 (0: no tracking)");
  require(a.track_sentences >= 1, "--track-sentences must be >= 1");
  require(!a.given("--valid-max-sentences") || a.valid_max_sentences > 0, "--valid-max-sentences must be >= 1");
  TrainOptions o;
  o.out_dir = a.out;
  o.resume = a.resume;
  o.overwrite = a.overwrite;
  o.model_name = a.model;
  o.seed = a.seed;
  o.log_every = a.log_every;
  o.max_nonfinite = a.max_nonfinite;
  if (a.valid_max_sentences > 0) o.valid_max_sentences = size_t(a.valid_max_sentences);
  o.track_every = a.track_every;
  o.track_sentences = size_t(a.track_sentences);
  return o;
}

// The metrics asked for with --metrics (empty: all that apply).
inline std::vector<std::string> eval_metrics(const EvalArgs& a) {
  require(a.samples >= 1, "--samples must be >= 1");
  require(a.mi_samples >= 1, "--mi-samples must be >= 1");
  require(a.bleu_samples >= 1, "--bleu-samples must be >= 1");
  require(a.dist_samples >= 1, "--dist-samples must be >= 1");
  require(a.eval_batch_size >= 0, "--eval-batch-size must be >= 1 (0: the checkpoint's)");
  require(a.eval_rows >= 0, "--eval-rows must be >= 1 (0: the checkpoint's)");
  require(a.split == "train" || a.split == "valid" || a.split == "test",
          "--split must be train, valid or test (got '" + a.split + "')");
  std::vector<std::string> wanted;
  if (!a.metrics.empty()) {
    std::stringstream ms(a.metrics);
    for (std::string m; std::getline(ms, m, ',');) {
      require(std::find(all_metrics.begin(), all_metrics.end(), m) != all_metrics.end(),
              "--metrics: unknown metric '" + m + "' (available: nll, mi, bleu, dist, grad)");
      wanted.push_back(m);
    }
  }
  return wanted;
}

inline void check_sample_args(const SampleArgs& a) {
  require(a.n >= 1, "--n must be >= 1");
  require(a.max_len >= 1, "--max-len must be >= 1");
  require(std::isfinite(a.temperature) && a.temperature >= 0, "--temperature must be >= 0 (0 = greedy)");
}

inline void check_corpus_args(const CorpusArgs& a) { require(a.train_lines >= 10, "--train-lines must be >= 10"); }

struct CommandLine {
  CLI::App app{"couplevae: variational text models with coupled deterministic networks (Couple-VAE)"};
  TrainArgs train;
  EvalArgs eval;
  ReportArgs report;
  SampleArgs sample;
  InterpolateArgs interpolate;
  CorpusArgs corpus;
  CLI::App *train_cmd, *eval_cmd, *report_cmd, *sample_cmd, *interp_cmd, *corpus_cmd;

  CommandLine() {
    app.require_subcommand(1);
    const auto add_backend = [](CLI::App* cmd, std::string& backend) {
      cmd->add_option("--backend", backend, "cpu (default) or cuda (an NVIDIA GPU; needs a build with COUPLEVAE_WITH_CUDA=ON)")
          ->check(CLI::IsMember({"cpu", "cuda"}));
    };
    // The defaults of the sizes and the schedule come from the preset and the model
    // (model_config); the help shows PTB's for the VAE.
    const Config ptb = model_config("vae", "ptb");
    const auto preset_default = [](auto v) { return " (default: the preset's and model's; ptb " + std::to_string(v) + ")"; };
    std::string ptb_dilations;
    for (int d : ptb.cnn_dilations) ptb_dilations += (ptb_dilations.empty() ? "" : " ") + std::to_string(d);
    TrainArgs& ta = train;
    train_cmd = ta.cmd = app.add_subcommand("train", "train a model; writes OUT/last.safetensors and OUT/best.safetensors");
    train_cmd->add_option("--model", ta.model, "model name: " + model_name_list())->required();
    train_cmd->add_option("--data", ta.data, "folder holding train.txt valid.txt test.txt")->required();
    train_cmd->add_option("--preset", ta.preset, "dataset preset: ptb, yelp or yahoo")->capture_default_str();
    train_cmd->add_option("--steps", ta.steps, "training steps" + preset_default(ptb.steps));
    train_cmd->add_option("--seed", ta.seed, "random seed")->capture_default_str();
    train_cmd->add_option("--out", ta.out, "output folder for checkpoints (default: none; nothing is written)");
    const auto lambda_c = [](const char* model) { return model_config(model, "ptb").lambda_c; };
    train_cmd->add_option("--lambda-c", ta.lambda_c,
                          printf_string("coupling weight (default: the model's: %g; on ptb %g for couple-vmf-vae, %g for "
                                        "couple-cnn-vae)",
                                        lambda_c("couple-vae"), lambda_c("couple-vmf-vae"), lambda_c("couple-cnn-vae")));
    train_cmd->add_option("--coupling", ta.coupling, "coupling loss: rq (default) or euclidean (the default of couple-vae on yahoo)");
    train_cmd->add_option("--beta", ta.beta,
                          printf_string("cap of the KL weight for the beta-VAE models (default: the model's, %g or %g)",
                                        model_config("beta0.8-vae", "ptb").beta, model_config("beta1.2-vae", "ptb").beta));
    train_cmd->add_option("--cnn-channels", ta.cnn_channels, "channels of the dilated CNN decoder" + preset_default(ptb.cnn_channels));
    train_cmd->add_option("--dilations", ta.dilations, "dilations of the CNN decoder's blocks (default: the preset's; ptb " + ptb_dilations + ")");
    train_cmd->add_option("--resume", ta.resume, "continue from a last.safetensors");
    train_cmd->add_flag("--overwrite", ta.overwrite, "replace a run already in --out");
    train_cmd->add_flag("--aggressive", ta.aggressive,
                        "aggressive inference-network training (He et al.'s Lagging-VAE schedule) for any model "
                        "with a stochastic posterior; lagging-vae and couple-lagging-vae imply it");
    train_cmd->add_option("--embed", ta.embed, "embedding size" + preset_default(ptb.embed));
    train_cmd->add_option("--hidden", ta.hidden, "encoder size per direction (decoder: twice)" + preset_default(ptb.hidden));
    train_cmd->add_option("--latent", ta.latent, "latent size" + preset_default(ptb.latent));
    train_cmd->add_option("--batch-size", ta.batch_size, "batch size" + preset_default(ptb.batch_size));
    train_cmd->add_option("--valid-every", ta.valid_every, "validate every N steps" + preset_default(ptb.valid_every));
    train_cmd->add_option("--valid-max-sentences", ta.valid_max_sentences, "validate on the first N sentences only (default: all)");
    train_cmd->add_option("--eval-batch-size", ta.eval_batch_size,
                          "sentences per validation batch (default 0: --batch-size; larger runs faster on a GPU, with "
                          "the same numbers); kept in the checkpoints for eval");
    train_cmd->add_option("--eval-rows", ta.eval_rows,
                          "sentences decoded together in evaluation, importance samples included (default " +
                              std::to_string(Config{}.eval_rows) + ")");
    train_cmd->add_option("--kl-start", ta.kl_start, "step after which KL annealing starts" + preset_default(ptb.kl_start));
    train_cmd->add_option("--kl-anneal-steps", ta.kl_anneal_steps, "steps over which the KL weight rises to its cap" + preset_default(ptb.kl_anneal_steps));
    train_cmd->add_option("--log-every", ta.log_every, "progress line every N steps (0: none)")->capture_default_str();
    train_cmd->add_option("--max-nonfinite", ta.max_nonfinite,
                          "stop after this many non-finite steps in a row (each is skipped)")
        ->capture_default_str();
    train_cmd->add_option("--track-every", ta.track_every,
                          "every K steps record the gradient norms (grad_rec, grad_reg, grad_h, ...) on fixed validation "
                          "sentences into OUT/dynamics.csv and OUT/dynamics.npy (0: off)");
    train_cmd->add_option("--track-sentences", ta.track_sentences,
                          "validation sentences used by --track-every")
        ->capture_default_str();
    add_backend(train_cmd, ta.backend);

    EvalArgs& ea = eval;
    eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint (importance-sampled NLL, KL, PPL)");
    eval_cmd->add_option("--checkpoint", ea.checkpoint, "a .safetensors checkpoint")->required();
    eval_cmd->add_option("--data", ea.data, "folder holding the split's .txt file")->required();
    eval_cmd->add_option("--split", ea.split, "train, valid or test")->capture_default_str();
    eval_cmd->add_option("--samples", ea.samples, "importance samples per sentence")->capture_default_str();
    eval_cmd->add_option("--max-sentences", ea.max_sentences, "evaluate the first M sentences only (default: all)");
    eval_cmd->add_option("--metrics", ea.metrics, "comma-separated: nll,mi,bleu,dist,grad (default: all that apply)");
    eval_cmd->add_option("--mi-samples", ea.mi_samples, "samples per sentence for MI")->capture_default_str();
    eval_cmd->add_option("--bleu-samples", ea.bleu_samples, "posterior samples per sentence for BLEU")->capture_default_str();
    eval_cmd->add_option("--dist-samples", ea.dist_samples, "prior samples for Dist-1/2")->capture_default_str();
    eval_cmd->add_option("--seed", ea.seed, "seed of the evaluation noise")->capture_default_str();
    eval_cmd->add_option("--eval-batch-size", ea.eval_batch_size, "sentences per NLL batch (default: the checkpoint's)");
    eval_cmd->add_option("--eval-rows", ea.eval_rows,
                         "sentences decoded together, importance samples included (default: the checkpoint's)");
    eval_cmd->add_flag("--json", ea.json, "print one JSON line last");
    eval_cmd->add_option("--json-out", ea.json_out, "also write the JSON object to FILE (atomically), e.g. RUN/eval.json");
    add_backend(eval_cmd, ea.backend);

    report_cmd = app.add_subcommand(
        "report", "Markdown tables (paper Tables 1, 2, 4) and an SVG of the training dynamics over run folders");
    report_cmd->add_option("--runs", report.runs,
                           "run folders: best.safetensors or last.safetensors, optional eval.json and dynamics.csv")
        ->required();
    report_cmd->add_option("--out", report.out, "Markdown file to write (default report.md; - for standard output)");
    report_cmd->add_option("--plot", report.plot, "SVG figure of the training dynamics (default: --out with .svg)");
    report_cmd->add_flag("--squared", report.squared, "plot the squared norms (the *_sq columns) instead of the norms");

    sample_cmd = app.add_subcommand("sample", "print N samples from the prior, one a line");
    sample_cmd->add_option("--checkpoint", sample.checkpoint, "a .safetensors checkpoint")->required();
    sample_cmd->add_option("--n", sample.n, "number of samples")->capture_default_str();
    sample_cmd->add_option("--temperature", sample.temperature, "0: greedy decoding; > 0: sampling")->capture_default_str();
    sample_cmd->add_option("--seed", sample.seed, "seed")->capture_default_str();
    sample_cmd->add_option("--max-len", sample.max_len, "maximum tokens")->capture_default_str();
    add_backend(sample_cmd, sample.backend);

    interp_cmd = app.add_subcommand("interpolate", "decode 7 points between two sentences' posterior means");
    interp_cmd->add_option("--checkpoint", interpolate.checkpoint, "a .safetensors checkpoint")->required();
    interp_cmd->add_option("--a", interpolate.a, "first sentence")->required();
    interp_cmd->add_option("--b", interpolate.b, "second sentence")->required();
    add_backend(interp_cmd, interpolate.backend);

    corpus_cmd = app.add_subcommand("make-corpus", "write the small synthetic corpus of the quick start");
    corpus_cmd->add_option("--out", corpus.out, "folder to write train.txt valid.txt test.txt into")->required();
    corpus_cmd->add_option("--seed", corpus.seed, "seed")->capture_default_str();
    corpus_cmd->add_option("--train-lines", corpus.train_lines, "training sentences")->capture_default_str();
  }

  // Parses argv. Returns -1 when a command is to run, otherwise the exit code: 0 after
  // printing the help, 2 after printing a one-line error.
  int parse(int argc, const char* const* argv) {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::fprintf(stderr, "couplevae: error: %s (see --help)\n", detail::one_line(e.what()).c_str());
      return 2;
    }
    return -1;
  }
};

}  // namespace couplevae::cli
