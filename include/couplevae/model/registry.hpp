// couplevae/model/registry.hpp: the named models of the paper's tables, and their presets.
//
// with_model(name, f) calls f.template operator()<M>() with the model type registered
// under `name`, so a program picks a compile-time model from a run-time string:
//   with_model("couple-vae", [&]<class M>() { M model(cfg, seed); ... });
// model_config(name, preset) is the preset's Config with the model's own settings from the
// authors' released configuration (reference.md §7-8, §15): KL annealing start, beta,
// lambda_c (including their odd ones: vMF 7.5/7/5, PTB Couple-CNN 0) and the coupling kind.
// "lagging-vae" / "couple-lagging-vae" are the VAE / Couple-VAE types with config.aggressive
// (He et al.'s schedule, train/aggressive.hpp); KL annealing as the VAE's. "sa-vae" is
// SemiAmortized<VAE> with Kim et al.'s SVI settings (20 steps, lr 1, momentum 0.5, clip 5).
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../decoder/dilated_cnn.hpp"
#include "../decoder/gru.hpp"
#include "../posterior/deterministic.hpp"
#include "../posterior/flow.hpp"
#include "../posterior/gaussian.hpp"
#include "../posterior/vmf.hpp"
#include "../regularizer/kl.hpp"
#include "../regularizer/mmd.hpp"
#include "../regularizer/zero.hpp"
#include "coupled.hpp"
#include "lm.hpp"
#include "model.hpp"
#include "semi_amortized.hpp"

namespace couplevae {

namespace models {
using LM = LanguageModel<Decoder<GRU>>;
using DAE = Model<Posterior<Deterministic>, Regularizer<Zero>, Decoder<GRU>>;
using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
using BetaVAE = Model<Posterior<Gaussian>, Regularizer<Beta>, Decoder<GRU>>;
using VMFVAE = Model<Posterior<VMF>, Regularizer<KL>, Decoder<GRU>>;
using CNNVAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<DilatedCNN>>;
using WAE = Model<Posterior<Gaussian>, Regularizer<MMD>, Decoder<GRU>>;
using VAENF = Model<Posterior<Flow<3>>, Regularizer<KL>, Decoder<GRU>>;
using WAENF = Model<Posterior<Flow<3>>, Regularizer<MMD>, Decoder<GRU>>;
using SAVAE = SemiAmortized<VAE>;
}  // namespace models

// with_backend_t<M, B>: the same model on backend B (models:: aliases are cpu models):
//   with_backend_t<Coupled<models::VAE>, cuda> = Coupled<Model<..., cuda, float>>.
template <class M, class B>
struct with_backend;
template <class P, class R, class D, class B0, class T, class B>
struct with_backend<Model<P, R, D, B0, T>, B> {
  using type = Model<P, R, D, B, T>;
};
template <class M, class B>
struct with_backend<Coupled<M>, B> {
  using type = Coupled<typename with_backend<M, B>::type>;
};
template <class M, class B>
struct with_backend<SemiAmortized<M>, B> {
  using type = SemiAmortized<typename with_backend<M, B>::type>;
};
template <class D, class B0, class T, class B>
struct with_backend<LanguageModel<D, B0, T>, B> {
  using type = LanguageModel<D, B, T>;
};
template <class M, class B>
using with_backend_t = typename with_backend<M, B>::type;

inline const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {
      "lm",         "dae",           "vae",         "couple-vae",         "beta0.8-vae", "couple-beta0.8-vae",
      "beta1.2-vae", "couple-beta1.2-vae", "vmf-vae", "couple-vmf-vae",     "cnn-vae",     "couple-cnn-vae",
      "wae",        "couple-wae",    "vae-nf",      "couple-vae-nf",      "wae-nf",      "couple-wae-nf",
      "lagging-vae", "couple-lagging-vae", "sa-vae"};
  return names;
}

inline std::string model_name_list() {
  std::string s;
  for (const auto& n : model_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

namespace detail {
inline bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
// "couple-X" -> "X"
inline std::string base_name(const std::string& name) {
  return starts_with(name, "couple-") ? name.substr(7) : name;
}
}  // namespace detail

template <class F>
decltype(auto) with_model(const std::string& name, F&& f) {
  using namespace models;
  if (name == "lm") return f.template operator()<LM>();
  if (name == "dae") return f.template operator()<DAE>();
  if (name == "vae") return f.template operator()<VAE>();
  if (name == "couple-vae") return f.template operator()<Coupled<VAE>>();
  // Lagging-VAE: the VAE trained aggressively (config.aggressive, train/aggressive.hpp).
  if (name == "lagging-vae") return f.template operator()<VAE>();
  if (name == "couple-lagging-vae") return f.template operator()<Coupled<VAE>>();
  // SA-VAE: the VAE with K SVI steps per posterior (model/semi_amortized.hpp); no Coupled twin.
  if (name == "sa-vae") return f.template operator()<SAVAE>();
  if (name == "beta0.8-vae" || name == "beta1.2-vae") return f.template operator()<BetaVAE>();
  if (name == "couple-beta0.8-vae" || name == "couple-beta1.2-vae") return f.template operator()<Coupled<BetaVAE>>();
  if (name == "vmf-vae") return f.template operator()<VMFVAE>();
  if (name == "couple-vmf-vae") return f.template operator()<Coupled<VMFVAE>>();
  if (name == "cnn-vae") return f.template operator()<CNNVAE>();
  if (name == "couple-cnn-vae") return f.template operator()<Coupled<CNNVAE>>();
  if (name == "wae") return f.template operator()<WAE>();
  if (name == "couple-wae") return f.template operator()<Coupled<WAE>>();
  if (name == "vae-nf") return f.template operator()<VAENF>();
  if (name == "couple-vae-nf") return f.template operator()<Coupled<VAENF>>();
  if (name == "wae-nf") return f.template operator()<WAENF>();
  if (name == "couple-wae-nf") return f.template operator()<Coupled<WAENF>>();
  throw Error("unknown model '" + name + "' (expected one of: " + model_name_list() + ")");
}

// The preset's configuration with the model's own settings (reference.md §7-8, §15).
inline Config model_config(const std::string& name, const std::string& preset) {
  bool known = false;
  for (const auto& n : model_names()) known = known || n == name;
  require(known, "unknown model '" + name + "' (expected one of: " + model_name_list() + ")");
  Config c = Config::preset(preset);
  const std::string base = detail::base_name(name);
  const bool coupled = base != name;
  // The VAE and beta-VAE families start KL annealing at 1K on Yelp and Yahoo (§7, §15.4).
  if ((preset == "yelp" || preset == "yahoo") &&
      (base == "vae" || base == "beta0.8-vae" || base == "beta1.2-vae"))
    c.kl_start = 1000;
  if (base == "beta0.8-vae") c.beta = 0.8;
  if (base == "beta1.2-vae") c.beta = 1.2;
  c.lambda_c = coupled ? 0.1 : 0.0;
  if (base == "lagging-vae") c.aggressive = true;
  if (base == "lagging-vae" || name == "sa-vae") {
    // He et al.'s and Kim et al.'s KL annealing: 0.1 at step 0, rising linearly to 1 over 10
    // epochs of batches of 32 (PTB 42,068 sentences, Yelp and Yahoo 100,000). The aggressive
    // inner loop needs a weight above 0 from the start: at weight 0 it drives the KL to
    // thousands of nats; SA-VAE's SVI then optimises the ELBO rather than the likelihood.
    const int epoch = preset == "ptb" ? 42068 / 32 : 100000 / 32;
    c.kl_anneal_steps = int(std::lround(10.0 * epoch / 0.9));
    c.kl_start = -int(std::lround(0.1 * c.kl_anneal_steps));
  }
  if (name == "couple-vmf-vae") c.lambda_c = preset == "ptb" ? 7.5 : preset == "yelp" ? 7.0 : 5.0;
  if (name == "couple-cnn-vae" && preset == "ptb") c.lambda_c = 0.0;
  // The authors' Yahoo Couple-VAE used the plain squared distance (§15.5).
  if (name == "couple-vae" && preset == "yahoo") c.coupling = "euclidean";
  return c;
}

}  // namespace couplevae
