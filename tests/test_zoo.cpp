// The model zoo: every registered model name builds, trains, evaluates and round-trips
// through a checkpoint; whole-model gradient checks for the families not covered by their
// own test files (beta-VAE, WAE-NF); the authors' per-dataset presets.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include <couplevae/couplevae.hpp>

#include "gradcheck.hpp"

using namespace couplevae;
namespace fs = std::filesystem;

namespace {
Config tiny(const Config& base, int vocab) {
  Config c = base;
  c.vocab_size = vocab;
  c.embed = 6;
  c.hidden = 4;
  c.latent = 3;
  c.mlp_hidden = 5;
  c.cnn_channels = 4;
  c.cnn_dilations = {1, 2};
  c.batch_size = 4;
  c.valid_every = 3;
  c.valid_samples = 2;
  c.kl_start = 0;
  c.kl_anneal_steps = 10;
  return c;
}

Dataset zoo_data() {
  std::vector<std::vector<std::string>> train = {{"a", "b", "c"}, {"b", "c"}, {"c", "a", "d", "b"}, {"d"},
                                                 {"a", "a", "b"}, {"b", "d", "c", "a", "b"}, {"c", "c"}, {"d", "a"}};
  Dataset d;
  d.vocab = Vocab::build(train);
  d.train = d.vocab.encode_all(train);
  d.valid = d.vocab.encode_all({{"a", "b"}, {"c", "d", "a"}, {"b"}, {"d", "d"}, {"a", "c", "b"}});
  d.test = d.valid;
  return d;
}

template <class M>
void gradient_check(M& model, long step) {
  const Batch b = make_batch({{4, 5, 6}, {7, 3}, {8, 5, 4, 6, 7}, {5}}, model.config().vocab_size);
  CHECK(gradcheck::check_model(model, b, step, 5) > 80);
}
}  // namespace

TEST_CASE("zoo: beta-VAE and WAE-NF whole-model gradient checks, plain and coupled (double)") {
  Config c = tiny(Config::preset("ptb"), 10);
  c.beta = 0.8;
  c.lambda_c = 2.0;
  using Beta = Model<Posterior<Gaussian>, Regularizer<couplevae::Beta>, Decoder<GRU>, cpu, double>;
  using WAENF = Model<Posterior<Flow<2>>, Regularizer<MMD>, Decoder<GRU>, cpu, double>;
  {
    Beta m(c, 1);
    Context<> ctx(1);
    // Step 20 of a 10-step ramp: the weight is capped at beta.
    CHECK(m.forward(ctx, make_batch({{4, 5}}, 10), 20).kl_weight == doctest::Approx(0.8));
    gradient_check(m, 5);
  }
  {
    Coupled<Beta> m(c, 2);
    gradient_check(m, 5);
  }
  {
    WAENF m(c, 3);
    gradient_check(m, 5);
  }
  {
    Coupled<WAENF> m(c, 4);
    gradient_check(m, 5);
  }
}

TEST_CASE("zoo: every model name trains, evaluates and round-trips through its checkpoint") {
  const Dataset d = zoo_data();
  const auto dir = fs::temp_directory_path() / ("couplevae-zoo-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const std::string& name : model_names()) {
    CAPTURE(name);
    Config c = tiny(model_config(name, "ptb"), int(d.vocab.size()));
    with_model(name, [&]<class M>() {
      M model(c, 7);
      std::ostringstream log;
      TrainOptions o;
      o.model_name = name;
      o.steps = 6;
      o.log_every = 3;
      o.log = &log;
      o.out_dir = (dir / name).string();
      const TrainResult r = train(model, d, o);
      CHECK(std::isfinite(r.last.loss));
      CHECK(r.nonfinite_skipped == 0);
      const NllReport a = evaluate_nll(model, d.test, 3, 5);
      CHECK(std::isfinite(a.rec));
      const bool is_dae = name == "dae", is_lm = name == "lm";
      CHECK(a.has_nll == !is_dae);
      CHECK(a.has_rec_c == name.starts_with("couple-"));
      if (is_lm) CHECK(a.nll == doctest::Approx(a.rec));  // exact likelihood
      if (a.has_nll && !is_lm) CHECK(a.nll <= a.rec + a.kl + 1e-6);  // IW bound below the ELBO
      // One sentence a batch, shared among 3 threads (model replicas: parameters and
      // running statistics copied) = the same batches on one thread.
      const NllReport s1 = evaluate_nll(model, d.test, 3, 5, size_t(-1), 1, {}, 1);
      const NllReport s3 = evaluate_nll(model, d.test, 3, 5, size_t(-1), 1, {}, 3);
      CHECK(d.test.size() >= 3);
      CHECK(s3.rec == doctest::Approx(s1.rec).epsilon(1e-6));
      CHECK(s3.nll == doctest::Approx(s1.nll).epsilon(1e-6));
      CHECK(s3.rec_c == doctest::Approx(s1.rec_c).epsilon(1e-6));
      // Reload the last checkpoint into a fresh model: identical evaluation.
      M fresh(c, 99);
      const CheckpointInfo info = load_checkpoint((dir / name / "last.safetensors").string(), fresh);
      CHECK(info.model == name);
      const NllReport b = evaluate_nll(fresh, d.test, 3, 5);
      CHECK(b.rec == doctest::Approx(a.rec).epsilon(1e-6));
      CHECK(b.nll == doctest::Approx(a.nll).epsilon(1e-6));
      // Each (sentence, sample) pair draws its own noise (posterior/noise.hpp): batches of
      // one (s1), of four (a) and of five decoding one copy at a time (eval_rows 1) give the
      // same estimate up to float rounding; another seed draws other noise. SA-VAE's SVI
      // clips the gradient of the whole batch, so its refinement depends on the batch.
      Config one_row = c;
      one_row.eval_rows = 1;
      M narrow(one_row, 98);
      load_checkpoint((dir / name / "last.safetensors").string(), narrow);
      const NllReport n5 = evaluate_nll(narrow, d.test, 3, 5, size_t(-1), 5);
      if (name != "sa-vae") {
        CHECK(s1.nll == doctest::Approx(a.nll).epsilon(1e-5));
        CHECK(s1.kl == doctest::Approx(a.kl).epsilon(1e-5));
        CHECK(n5.nll == doctest::Approx(a.nll).epsilon(1e-5));
        CHECK(n5.rec == doctest::Approx(a.rec).epsilon(1e-5));
        CHECK(n5.rec_c == doctest::Approx(a.rec_c).epsilon(1e-5));
      }
      if (a.has_nll && !is_lm) CHECK(evaluate_nll(model, d.test, 3, 6).nll != a.nll);
    });
  }
  fs::remove_all(dir);
}

TEST_CASE("zoo: the authors' presets per model and dataset (reference.md §7-8, §15)") {
  CHECK(model_config("couple-vae", "ptb").lambda_c == 0.1);
  CHECK(model_config("vae", "ptb").lambda_c == 0.0);
  CHECK(model_config("couple-vmf-vae", "ptb").lambda_c == 7.5);
  CHECK(model_config("couple-vmf-vae", "yelp").lambda_c == 7.0);
  CHECK(model_config("couple-vmf-vae", "yahoo").lambda_c == 5.0);
  CHECK(model_config("couple-cnn-vae", "ptb").lambda_c == 0.0);
  CHECK(model_config("couple-cnn-vae", "yelp").lambda_c == 0.1);
  CHECK(model_config("couple-vae", "yahoo").coupling == "euclidean");
  CHECK(model_config("couple-vae", "yelp").coupling == "rq");
  CHECK(model_config("vae", "yelp").kl_start == 1000);
  CHECK(model_config("couple-beta1.2-vae", "yahoo").kl_start == 1000);
  CHECK(model_config("wae", "yelp").kl_start == 2000);
  CHECK(model_config("vae", "ptb").kl_start == 2000);
  CHECK(model_config("beta0.8-vae", "ptb").beta == 0.8);
  CHECK(model_config("couple-beta1.2-vae", "ptb").beta == 1.2);
  CHECK(model_config("cnn-vae", "yelp").cnn_channels == 128);
  CHECK(model_config("cnn-vae", "yahoo").cnn_dilations.size() == 10);
  CHECK(model_config("cnn-vae", "ptb").cnn_dilations == std::vector<int>{1, 2, 4, 8, 16});
  CHECK(model_config("vae", "yelp").hidden == 256);
  CHECK_THROWS_WITH_AS(model_config("couple-lm", "ptb"), doctest::Contains("unknown model 'couple-lm'"), Error);
  CHECK(model_names().size() == 21);
  CHECK(model_config("sa-vae", "ptb").svi_steps == 20);
  CHECK(model_config("lagging-vae", "ptb").aggressive);
  CHECK(model_config("couple-lagging-vae", "ptb").aggressive);
  CHECK(model_config("couple-lagging-vae", "ptb").lambda_c == 0.1);
  CHECK_FALSE(model_config("couple-vae", "ptb").aggressive);
  // He et al.'s annealing for the Lagging-VAE: 0.1 at step 0, 1 after 10 epochs (PTB: 13,140 steps).
  for (const char* name : {"lagging-vae", "couple-lagging-vae", "sa-vae"}) {
    const Config c = model_config(name, "ptb");
    CHECK(kl_weight(0, c.kl_start, c.kl_anneal_steps, 1.0) == doctest::Approx(0.1).epsilon(1e-3));
    CHECK(kl_weight(1315 * 10, c.kl_start, c.kl_anneal_steps, 1.0) == doctest::Approx(1.0).epsilon(1e-3));
    CHECK(kl_weight(1315 * 5, c.kl_start, c.kl_anneal_steps, 1.0) == doctest::Approx(0.55).epsilon(1e-3));
  }
  Config neg = Config::preset("ptb");
  neg.kl_start = -neg.kl_anneal_steps - 1;
  CHECK_THROWS_WITH_AS(neg.validate(), doctest::Contains("kl_start must be >= -kl_anneal_steps"), Error);
}
