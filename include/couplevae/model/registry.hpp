// couplevae/model/registry.hpp: the named models of the paper's tables, and their presets.
//
// with_model(name, f) calls f.template operator()<M>() with the model type registered
// under `name`, so a program picks a compile-time model from a run-time string:
//   with_model("couple-vae", [&]<class M>() { M model(cfg, seed); ... });
// model_config(name, preset) is the preset's Config with the model's own settings applied
// (reference.md §7-8: lambda_c, KL annealing start, beta).
#pragma once
#include <string>
#include <vector>

#include "../config.hpp"
#include "../decoder/gru.hpp"
#include "../posterior/gaussian.hpp"
#include "../regularizer/kl.hpp"
#include "coupled.hpp"
#include "model.hpp"

namespace couplevae {

namespace models {
using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
using CoupleVAE = Coupled<VAE>;
}  // namespace models

inline const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"vae", "couple-vae"};
  return names;
}

inline std::string model_name_list() {
  std::string s;
  for (const auto& n : model_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

template <class F>
decltype(auto) with_model(const std::string& name, F&& f) {
  if (name == "vae") return f.template operator()<models::VAE>();
  if (name == "couple-vae") return f.template operator()<models::CoupleVAE>();
  throw Error("unknown model '" + name + "' (expected one of: " + model_name_list() + ")");
}

// The preset's configuration with the model's own settings (reference.md §7-8).
inline Config model_config(const std::string& name, const std::string& preset) {
  bool known = false;
  for (const auto& n : model_names()) known = known || n == name;
  require(known, "unknown model '" + name + "' (expected one of: " + model_name_list() + ")");
  Config c = Config::preset(preset);
  // The VAE families start KL annealing at 1K on Yelp and Yahoo (reference.md §7, §15.4).
  if (preset == "yelp" || preset == "yahoo") c.kl_start = 1000;
  // The authors' Yahoo Couple-VAE used the plain squared distance (reference.md §15.5).
  if (name == "couple-vae" && preset == "yahoo") c.coupling = "euclidean";
  c.lambda_c = name.rfind("couple-", 0) == 0 ? 0.1 : 0.0;
  return c;
}

}  // namespace couplevae
