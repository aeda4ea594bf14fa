// couplevae/config.hpp: the runtime sizes and schedule of a model and its training.
//
// The structure of a model is compile-time (its policies); everything else lives here and
// is validated at construction. Presets carry the authors' per-dataset settings
// (reference.md §2, §6-9): `ptb` (encoder 128 per direction), `yelp` and `yahoo` (256).
// decoder_hidden = 0 means 2 * hidden, coupling_scale = 0 means 2 * latent (C in Eq. 5).
// The configuration travels inside every checkpoint as JSON (to_json / from_json).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace couplevae {

struct Config {
  std::string dataset = "ptb";
  // sizes
  int vocab_size = 10002;
  int embed = 200;
  int hidden = 128;          // encoder GRU size per direction
  int decoder_hidden = 0;    // 0: 2 * hidden
  int latent = 32;
  int mlp_hidden = 0;        // 0: embed
  double dropout = 0.2;
  // dilated CNN decoder (reference.md §6): channels F and one residual block per dilation
  int cnn_channels = 256;
  std::vector<int> cnn_dilations = {1, 2, 4, 8, 16};
  // objective
  double lambda_c = 0.1;     // weight of the coupling loss (Coupled models)
  double coupling_scale = 0; // C; 0: 2 * latent
  std::string coupling = "rq";  // "rq" (Eq. 5) or "euclidean" (plain squared distance)
  double beta = 1.0;         // cap of the KL weight (Regularizer<Beta>)
  // vMF sampler: false = exact Wood sampler; true = the authors' blended b for kappa > 10,
  // which samples a slightly different concentration (see README).
  bool vmf_blend = false;
  int kl_start = 2000;       // KL annealing starts after this step (negative: the weight is
                             // already -kl_start / kl_anneal_steps at step 0)
  int kl_anneal_steps = 40000;
  // optimisation
  int batch_size = 32;
  double lr = 1e-3, adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  double clip_norm = 30;
  int lr_decay_start = 30000, lr_decay_every = 2000;
  double lr_decay = 0.5;
  long steps = 60000;
  // Lagging-VAE (He et al. 2019; train/aggressive.hpp): aggressive inference-network
  // training until the validation MI stops rising; at most aggressive_inner encoder updates
  // per decoder update, stopped early when the loss summed over a window of
  // aggressive_window of them does not fall.
  bool aggressive = false;
  int aggressive_inner = 99, aggressive_window = 15;
  // SA-VAE (Kim et al. 2018; model/semi_amortized.hpp): svi_steps steps of SVI with momentum
  // on the posterior's (mu, log variance), learning rate svi_lr, each gradient clipped to
  // the norm svi_clip; Hessian-vector products by finite differences of step svi_fd
  // (0: scaled to the scalar's precision; Kim's code used the fixed 1e-5). svi_keep: the
  // backward reuses each SVI step's gradients from the forward (svi_steps arena-sized copies,
  // as Kim's code) instead of computing them again (2K + 1 decoder passes instead of 3K + 1).
  int svi_steps = 20;
  double svi_lr = 1.0, svi_momentum = 0.5, svi_clip = 5.0, svi_fd = 0;
  bool svi_keep = true;
  int valid_every = 1000, valid_samples = 10, test_samples = 100;
  // Evaluation's batching (eval/nll.hpp): sentences per batch (0: batch_size), and how many
  // sentences a model decodes together (its samples k at a time, k = eval_rows / batch,
  // at least 1). They change the speed (a GPU runs larger ones in fewer launches), not the
  // numbers: each (sentence, sample) draws its noise by the seed and its two indices
  // (eval/nll.hpp). SA-VAE excepted, whose SVI clips gradients over the whole batch.
  int eval_batch_size = 0, eval_rows = 256;
  // data
  int max_len = 200;
  bool drop_label = false;   // Yelp: the first column is a rating

  int dec_hidden() const { return decoder_hidden > 0 ? decoder_hidden : 2 * hidden; }
  int mlp_size() const { return mlp_hidden > 0 ? mlp_hidden : embed; }
  double coupling_c() const { return coupling_scale > 0 ? coupling_scale : 2.0 * latent; }
  int eval_batch() const { return eval_batch_size > 0 ? eval_batch_size : batch_size; }

  static Config preset(const std::string& name) {
    Config c;
    c.dataset = name;
    if (name == "ptb") {
      c.vocab_size = 10002;
      c.hidden = 128;
    } else if (name == "yelp") {
      c.vocab_size = 15002;
      c.hidden = 256;
      c.drop_label = true;
      c.cnn_channels = 128;
      c.cnn_dilations = {1, 2, 4, 8, 16, 1, 2, 4, 8, 16};
    } else if (name == "yahoo") {
      c.vocab_size = 20001;
      c.hidden = 256;
      c.cnn_channels = 256;
      c.cnn_dilations = {1, 2, 4, 8, 16, 1, 2, 4, 8, 16};
    } else {
      throw Error("unknown preset '" + name + "' (expected ptb, yelp or yahoo)");
    }
    c.validate();
    return c;
  }

  // Throws Error naming the first impossible value.
  void validate() const {
    auto positive = [](const char* what, double v) {
      require(v > 0 && std::isfinite(v), std::string("config: ") + what + " must be positive (got " + fmt(v) + ")");
    };
    auto non_negative = [](const char* what, double v) {
      require(v >= 0 && std::isfinite(v), std::string("config: ") + what + " must be >= 0 (got " + fmt(v) + ")");
    };
    require(vocab_size > 4, "config: vocab_size must exceed the 4 reserved tokens (got " + std::to_string(vocab_size) + ")");
    positive("embed", embed);
    positive("hidden", hidden);
    non_negative("decoder_hidden", decoder_hidden);
    positive("latent", latent);
    non_negative("mlp_hidden", mlp_hidden);
    require(dropout >= 0 && dropout < 1, "config: dropout must be in [0, 1) (got " + fmt(dropout) + ")");
    non_negative("lambda_c", lambda_c);
    non_negative("coupling_scale", coupling_scale);
    require(coupling == "rq" || coupling == "euclidean",
            "config: coupling must be 'rq' or 'euclidean' (got '" + coupling + "')");
    positive("beta", beta);
    require(kl_start >= -kl_anneal_steps, "config: kl_start must be >= -kl_anneal_steps (got " + std::to_string(kl_start) +
                                              "): the KL weight at step 0 is -kl_start / kl_anneal_steps, at most 1");
    positive("kl_anneal_steps", kl_anneal_steps);
    positive("batch_size", batch_size);
    positive("lr", lr);
    require(adam_beta1 >= 0 && adam_beta1 < 1 && adam_beta2 >= 0 && adam_beta2 < 1,
            "config: Adam betas must be in [0, 1)");
    positive("adam_eps", adam_eps);
    positive("clip_norm", clip_norm);
    non_negative("lr_decay_start", lr_decay_start);
    positive("lr_decay_every", lr_decay_every);
    positive("lr_decay", lr_decay);
    non_negative("steps", double(steps));
    positive("valid_every", valid_every);
    positive("valid_samples", valid_samples);
    positive("test_samples", test_samples);
    non_negative("eval_batch_size", eval_batch_size);
    positive("eval_rows", eval_rows);
    positive("max_len", max_len);
    positive("aggressive_inner", aggressive_inner);
    positive("aggressive_window", aggressive_window);
    non_negative("svi_steps", svi_steps);
    require(svi_steps <= 1000, "config: svi_steps must be at most 1000 (got " + std::to_string(svi_steps) + ")");
    positive("svi_lr", svi_lr);
    require(svi_momentum >= 0 && svi_momentum < 1, "config: svi_momentum must be in [0, 1) (got " + fmt(svi_momentum) + ")");
    positive("svi_clip", svi_clip);
    non_negative("svi_fd", svi_fd);
    positive("cnn_channels", cnn_channels);
    require(!cnn_dilations.empty(), "config: cnn_dilations must not be empty");
    for (int d : cnn_dilations) require(d >= 1 && d <= 4096, "config: cnn_dilations must be in [1, 4096] (got " + std::to_string(d) + ")");
    require(steps <= 1'000'000'000, "config: steps must be at most 1e9 (got " + std::to_string(steps) + ")");
    // Every weight matrix must stay addressable with int indices (and fit in memory).
    const double D = decoder_hidden > 0 ? decoder_hidden : 2.0 * hidden, H = hidden, E = embed, C = cnn_channels;
    const std::pair<const char*, double> matrices[] = {
        {"the embedding / output layer (vocab_size x embed)", double(vocab_size) * E},
        {"the decoder GRU (3 decoder_hidden x (2 embed + decoder_hidden))", 3 * D * (2 * E + D)},
        {"the encoder GRU (3 hidden x (embed + hidden))", 3 * H * (E + H)},
        {"the MLP and posterior heads", std::max(double(mlp_size()) * std::max(E, double(latent)), 2 * H * latent)},
        {"the CNN decoder (cnn_channels^2 x 3)", 3 * C * std::max(C, E + double(latent))}};
    for (const auto& [what, n] : matrices)
      require(n < 1e9, std::string("config: sizes too large: ") + what + " would hold " + fmt(n) +
                           " weights (at most 1e9)");
  }

  nlohmann::json to_json() const {
    return {{"dataset", dataset}, {"vocab_size", vocab_size}, {"embed", embed}, {"hidden", hidden},
            {"decoder_hidden", decoder_hidden}, {"latent", latent}, {"mlp_hidden", mlp_hidden},
            {"dropout", dropout}, {"cnn_channels", cnn_channels}, {"cnn_dilations", cnn_dilations},
            {"lambda_c", lambda_c}, {"coupling_scale", coupling_scale},
            {"coupling", coupling}, {"beta", beta}, {"vmf_blend", vmf_blend}, {"kl_start", kl_start},
            {"kl_anneal_steps", kl_anneal_steps}, {"batch_size", batch_size}, {"lr", lr},
            {"adam_beta1", adam_beta1}, {"adam_beta2", adam_beta2}, {"adam_eps", adam_eps},
            {"clip_norm", clip_norm}, {"lr_decay_start", lr_decay_start},
            {"lr_decay_every", lr_decay_every}, {"lr_decay", lr_decay}, {"steps", steps},
            {"valid_every", valid_every}, {"valid_samples", valid_samples},
            {"test_samples", test_samples}, {"eval_batch_size", eval_batch_size}, {"eval_rows", eval_rows},
            {"max_len", max_len}, {"drop_label", drop_label},
            {"aggressive", aggressive}, {"aggressive_inner", aggressive_inner},
            {"aggressive_window", aggressive_window}, {"svi_steps", svi_steps}, {"svi_lr", svi_lr},
            {"svi_momentum", svi_momentum}, {"svi_clip", svi_clip}, {"svi_fd", svi_fd},
            {"svi_keep", svi_keep}};
  }

  // Reads every key of to_json(); unknown keys and wrong types are errors.
  static Config from_json(const nlohmann::json& j) {
    require(j.is_object(), "config: expected a JSON object");
    Config c;
    const nlohmann::json ref = c.to_json();
    for (auto it = j.begin(); it != j.end(); ++it)
      require(ref.contains(it.key()), "config: unknown key '" + it.key() + "'");
    try {
      auto get = [&](const char* k, auto& v) {
        if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
      };
      get("dataset", c.dataset); get("vocab_size", c.vocab_size); get("embed", c.embed);
      get("hidden", c.hidden); get("decoder_hidden", c.decoder_hidden); get("latent", c.latent);
      get("mlp_hidden", c.mlp_hidden); get("dropout", c.dropout);
      get("cnn_channels", c.cnn_channels); get("cnn_dilations", c.cnn_dilations); get("lambda_c", c.lambda_c);
      get("coupling_scale", c.coupling_scale); get("coupling", c.coupling); get("beta", c.beta); get("vmf_blend", c.vmf_blend);
      get("kl_start", c.kl_start); get("kl_anneal_steps", c.kl_anneal_steps);
      get("batch_size", c.batch_size); get("lr", c.lr); get("adam_beta1", c.adam_beta1);
      get("adam_beta2", c.adam_beta2); get("adam_eps", c.adam_eps); get("clip_norm", c.clip_norm);
      get("lr_decay_start", c.lr_decay_start); get("lr_decay_every", c.lr_decay_every);
      get("lr_decay", c.lr_decay); get("steps", c.steps); get("valid_every", c.valid_every);
      get("valid_samples", c.valid_samples); get("test_samples", c.test_samples);
      get("eval_batch_size", c.eval_batch_size); get("eval_rows", c.eval_rows);
      get("max_len", c.max_len); get("drop_label", c.drop_label);
      get("aggressive", c.aggressive); get("aggressive_inner", c.aggressive_inner);
      get("aggressive_window", c.aggressive_window); get("svi_steps", c.svi_steps); get("svi_lr", c.svi_lr);
      get("svi_momentum", c.svi_momentum); get("svi_clip", c.svi_clip); get("svi_fd", c.svi_fd);
      get("svi_keep", c.svi_keep);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("config: ") + e.what());
    }
    c.validate();
    return c;
  }

  // The fields that fix the parameter shapes: a checkpoint loads only into a model whose
  // architecture matches.
  nlohmann::json architecture() const {
    return {{"vocab_size", vocab_size}, {"embed", embed}, {"hidden", hidden},
            {"decoder_hidden", dec_hidden()}, {"latent", latent}, {"mlp_hidden", mlp_size()},
            {"cnn_channels", cnn_channels}, {"cnn_dilations", cnn_dilations}};
  }

 private:
  static std::string fmt(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }
};

}  // namespace couplevae
