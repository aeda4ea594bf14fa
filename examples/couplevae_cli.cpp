// couplevae: the command-line tool (an example program built with the project).
//
//   couplevae train --model NAME --data DIR [--preset ptb|yelp|yahoo] [--steps N]
//                   [--seed S] [--out DIR] [--lambda-c X] [--resume FILE] [--overwrite] ...
//   couplevae eval  --checkpoint FILE --data DIR [--split test] [--samples N]
//                   [--max-sentences M] [--metrics nll] [--json]
//   couplevae make-corpus --out DIR [--seed S]      (the toy corpus of the quick start)
//
// Errors (bad flags, bad values, bad files) print one line and exit with code 2.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>

#include <couplevae/couplevae.hpp>

using namespace couplevae;

namespace {

struct TrainArgs {
  std::string model, data, preset = "ptb", out, resume, coupling;
  double beta = 0;
  int cnn_channels = 0;
  std::vector<int> dilations;
  long steps = -1;
  uint64_t seed = 0;
  double lambda_c = -1;
  int embed = 0, hidden = 0, latent = 0, batch_size = 0, valid_every = 0, kl_start = -1, kl_anneal_steps = 0,
      log_every = 100;
  long valid_max_sentences = -1;
  bool overwrite = false;
};

struct EvalArgs {
  std::string checkpoint, data, split = "test", metrics = "nll";
  int samples = 100;
  long max_sentences = -1;
  uint64_t seed = 0;
  bool json = false;
};

int run_train(const TrainArgs& a) {
  Config cfg = model_config(a.model, a.preset);
  if (a.lambda_c >= 0) cfg.lambda_c = a.lambda_c;
  if (!a.coupling.empty()) cfg.coupling = a.coupling;
  if (a.beta > 0) cfg.beta = a.beta;
  if (a.cnn_channels > 0) cfg.cnn_channels = a.cnn_channels;
  if (!a.dilations.empty()) cfg.cnn_dilations = a.dilations;
  if (a.embed > 0) cfg.embed = a.embed;
  if (a.hidden > 0) cfg.hidden = a.hidden;
  if (a.latent > 0) cfg.latent = a.latent;
  if (a.batch_size > 0) cfg.batch_size = a.batch_size;
  if (a.valid_every > 0) cfg.valid_every = a.valid_every;
  if (a.kl_start >= 0) cfg.kl_start = a.kl_start;
  if (a.kl_anneal_steps > 0) cfg.kl_anneal_steps = a.kl_anneal_steps;
  if (a.steps >= 0) cfg.steps = a.steps;
  require(cfg.steps >= 1, "--steps must be >= 1");
  TrainOptions o;
  o.out_dir = a.out;
  o.resume = a.resume;
  o.overwrite = a.overwrite;
  prepare_out_dir(o);  // refuse a used or unwritable --out before any work
  CorpusOptions co;
  co.drop_label = cfg.drop_label;
  co.max_len = cfg.max_len;
  Dataset data = load_dataset(a.data, co);
  cfg.vocab_size = int(data.vocab.size());
  cfg.validate();
  std::cerr << "couplevae train: " << a.model << " on " << a.data << " (" << data.train.size() << " train, "
            << data.valid.size() << " valid sentences, vocabulary " << cfg.vocab_size << ")\n";
  return with_model(a.model, [&]<class M>() {
    M model(cfg, a.seed);
    std::cerr << "parameters: " << model.arena().count() << "\n";
    o.model_name = a.model;
    o.seed = a.seed;
    o.steps = cfg.steps;
    o.log_every = a.log_every;
    if (a.valid_max_sentences > 0) o.valid_max_sentences = size_t(a.valid_max_sentences);
    const TrainResult r = train(model, data, o);
    std::printf("trained %s for %ld steps in %.1f s; best validation NLL %.3f at step %ld\n", a.model.c_str(), r.steps,
                r.seconds, r.best_valid, r.best_step);
    return 0;
  });
}

int run_eval(const EvalArgs& a) {
  require(a.samples >= 1, "--samples must be >= 1");
  require(a.split == "train" || a.split == "valid" || a.split == "test",
          "--split must be train, valid or test (got '" + a.split + "')");
  std::stringstream ms(a.metrics);
  for (std::string m; std::getline(ms, m, ',');)
    require(m == "nll", "--metrics: unknown metric '" + m + "' (available: nll)");
  const CheckpointInfo info = read_checkpoint_info(a.checkpoint);
  CorpusOptions co;
  co.drop_label = info.config.drop_label;
  co.max_len = info.config.max_len;
  const std::string path = a.data + "/" + a.split + ".txt";
  const auto sentences = info.vocab.encode_all(read_corpus(path, co));
  return with_model(info.model, [&]<class M>() {
    M model(info.config, 0);
    load_checkpoint(a.checkpoint, model);
    const size_t limit = a.max_sentences > 0 ? size_t(a.max_sentences) : sentences.size();
    auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    const NllReport r = evaluate_nll(model, sentences, a.samples, a.seed, limit, info.config.batch_size,
                                     [&](size_t done, size_t all) {
                                       auto now = std::chrono::steady_clock::now();
                                       if (std::chrono::duration<double>(now - last).count() > 2 || done == all) {
                                         last = now;
                                         const double el = std::chrono::duration<double>(now - t0).count();
                                         std::fprintf(stderr, "\reval %zu/%zu sentences, %.1f s", done, all, el);
                                         if (done == all) std::fprintf(stderr, "\n");
                                       }
                                     });
    std::printf("%s %s:", info.model.c_str(), a.split.c_str());
    if (r.has_nll) std::printf(" nll %.3f kl %.3f ppl %.3f", r.nll, r.kl, r.ppl);
    std::printf(" rec %.3f", r.rec);
    if (r.has_rec_c) std::printf(" rec_c %.3f", r.rec_c);
    std::printf(" (%ld sentences, %d samples)\n", r.sentences, r.samples);
    if (a.json) {
      // Metrics that do not apply to the model are left out, never set to 0.
      nlohmann::json j = {{"model", info.model}, {"split", a.split}, {"rec", r.rec},
                          {"sentences", r.sentences}, {"tokens", r.tokens}, {"samples", r.samples}};
      if (r.has_nll) j["nll"] = r.nll, j["kl"] = r.kl, j["ppl"] = r.ppl;
      if (r.has_rec_c) j["rec_c"] = r.rec_c;
      std::printf("%s\n", j.dump().c_str());
    }
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"couplevae: variational text models with coupled deterministic networks (Couple-VAE)"};
  app.require_subcommand(1);
  TrainArgs ta;
  auto* train_cmd = app.add_subcommand("train", "train a model; writes OUT/last.safetensors and OUT/best.safetensors");
  train_cmd->add_option("--model", ta.model, "model name: " + model_name_list())->required();
  train_cmd->add_option("--data", ta.data, "folder holding train.txt valid.txt test.txt")->required();
  train_cmd->add_option("--preset", ta.preset, "dataset preset: ptb, yelp or yahoo");
  train_cmd->add_option("--steps", ta.steps, "training steps (default: the preset's 60000)");
  train_cmd->add_option("--seed", ta.seed, "random seed");
  train_cmd->add_option("--out", ta.out, "output folder for checkpoints");
  train_cmd->add_option("--lambda-c", ta.lambda_c, "coupling weight (default: the preset's)");
  train_cmd->add_option("--coupling", ta.coupling, "coupling loss: rq (default) or euclidean");
  train_cmd->add_option("--beta", ta.beta, "cap of the KL weight for the beta-VAE models");
  train_cmd->add_option("--cnn-channels", ta.cnn_channels, "channels of the dilated CNN decoder");
  train_cmd->add_option("--dilations", ta.dilations, "dilations of the CNN decoder's blocks, e.g. 1 2 4 8 16");
  train_cmd->add_option("--resume", ta.resume, "continue from a last.safetensors");
  train_cmd->add_flag("--overwrite", ta.overwrite, "replace a run already in --out");
  train_cmd->add_option("--embed", ta.embed, "embedding size");
  train_cmd->add_option("--hidden", ta.hidden, "encoder size per direction (decoder: twice)");
  train_cmd->add_option("--latent", ta.latent, "latent size");
  train_cmd->add_option("--batch-size", ta.batch_size, "batch size");
  train_cmd->add_option("--valid-every", ta.valid_every, "validate every N steps");
  train_cmd->add_option("--valid-max-sentences", ta.valid_max_sentences, "validate on the first N sentences only");
  train_cmd->add_option("--kl-start", ta.kl_start, "step after which KL annealing starts");
  train_cmd->add_option("--kl-anneal-steps", ta.kl_anneal_steps, "steps over which the KL weight rises to its cap");
  train_cmd->add_option("--log-every", ta.log_every, "progress line every N steps");

  EvalArgs ea;
  auto* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint (importance-sampled NLL, KL, PPL)");
  eval_cmd->add_option("--checkpoint", ea.checkpoint, "a .safetensors checkpoint")->required();
  eval_cmd->add_option("--data", ea.data, "folder holding the split's .txt file")->required();
  eval_cmd->add_option("--split", ea.split, "train, valid or test");
  eval_cmd->add_option("--samples", ea.samples, "importance samples per sentence");
  eval_cmd->add_option("--max-sentences", ea.max_sentences, "evaluate the first M sentences only");
  eval_cmd->add_option("--metrics", ea.metrics, "comma-separated metrics: nll");
  eval_cmd->add_option("--seed", ea.seed, "seed of the evaluation noise");
  eval_cmd->add_flag("--json", ea.json, "print one JSON line last");

  std::string corpus_out;
  uint64_t corpus_seed = 0;
  int corpus_train = 3000;
  auto* corpus_cmd = app.add_subcommand("make-corpus", "write the small synthetic corpus of the quick start");
  corpus_cmd->add_option("--out", corpus_out, "folder to write train.txt valid.txt test.txt into")->required();
  corpus_cmd->add_option("--seed", corpus_seed, "seed");
  corpus_cmd->add_option("--train-lines", corpus_train, "training sentences");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "couplevae: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (*train_cmd) return run_train(ta);
    if (*eval_cmd) return run_eval(ea);
    if (*corpus_cmd) {
      require(corpus_train >= 10, "--train-lines must be >= 10");
      write_toy_corpus(corpus_out, corpus_seed, corpus_train);
      std::printf("wrote %s/train.txt valid.txt test.txt\n", corpus_out.c_str());
      return 0;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
