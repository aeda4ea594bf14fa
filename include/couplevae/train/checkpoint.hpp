// couplevae/train/checkpoint.hpp: model checkpoints (safetensors, train/safetensors.hpp).
//
// A checkpoint holds every parameter as an F32 tensor under its arena name; a training
// checkpoint also holds Adam's moments ("optimizer.m.NAME", "optimizer.v.NAME"). The
// "__metadata__" entry (all strings) carries:
//   format          "couplevae-checkpoint"      format_version  "1"
//   model           the model name ("vae", "couple-vae", ...)
//   structure       the compile-time structure ("coupled-gaussian-kl-gru")
//   config          the Config as JSON text      vocab  the vocabulary as a JSON array
//   train_state     JSON: step, generator position, batcher epoch/position, best validation
//                   (and, for aggressive training, its phase: train/aggressive.hpp)
//   optimizer_steps Adam's update count (optimizer_inference_steps: that of the inference
//                   network, when the optimiser has groups)
// load_checkpoint() refuses a file of another format version, structure or architecture
// (shape-fixing config fields), any missing, extra or misshapen tensor, any NaN or Inf value
// (and a negative Adam second moment), with a message naming the file and the tensor. Writes are atomic (temp file + rename).
#pragma once
#include <charconv>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../config.hpp"
#include "../core/arena.hpp"
#include "../core/error.hpp"
#include "../data/vocab.hpp"
#include "adam.hpp"
#include "safetensors.hpp"

namespace couplevae {

inline constexpr const char* checkpoint_format = "couplevae-checkpoint";
inline constexpr int checkpoint_version = 1;

struct TrainState {
  long step = 0;
  uint64_t rng_position = 0;
  uint64_t epoch = 0;
  uint64_t position = 0;
  double best_valid = 0;  // best validation NLL so far (0 = none yet)
  long best_step = 0;
  long nonfinite_skipped = 0;
  // Aggressive training (Lagging-VAE, train/aggressive.hpp); absent from the JSON otherwise.
  struct Aggressive {
    bool on = true;            // still in the aggressive phase
    long epochs = 0;           // epochs ended in it (MI measured at each)
    double last_mi = 0;        // the MI measured at the last of them
    long inner_steps = 0;      // inference-network updates so far
    long until = 0;            // the step at whose end the phase ended (0: still on, or a
                               // checkpoint written before this field existed)
    uint64_t epoch = 0, position = 0;  // the inner loop's own batcher
  };
  bool has_aggressive = false;
  Aggressive aggressive;

  nlohmann::json to_json() const {
    nlohmann::json j = {{"step", step}, {"rng_position", rng_position}, {"epoch", epoch}, {"position", position},
                        {"best_valid", best_valid}, {"best_step", best_step}, {"nonfinite_skipped", nonfinite_skipped}};
    if (has_aggressive)
      j["aggressive"] = {{"on", aggressive.on}, {"epochs", aggressive.epochs}, {"last_mi", aggressive.last_mi},
                         {"inner_steps", aggressive.inner_steps}, {"until", aggressive.until},
                         {"epoch", aggressive.epoch}, {"position", aggressive.position}};
    return j;
  }
  static TrainState from_json(const nlohmann::json& j) {
    TrainState s;
    s.step = j.at("step").get<long>();
    s.rng_position = j.at("rng_position").get<uint64_t>();
    s.epoch = j.at("epoch").get<uint64_t>();
    s.position = j.at("position").get<uint64_t>();
    s.best_valid = j.at("best_valid").get<double>();
    s.best_step = j.at("best_step").get<long>();
    s.nonfinite_skipped = j.value("nonfinite_skipped", 0L);
    if (j.contains("aggressive")) {
      const auto& a = j.at("aggressive");
      s.has_aggressive = true;
      s.aggressive.on = a.at("on").get<bool>();
      s.aggressive.epochs = a.at("epochs").get<long>();
      s.aggressive.last_mi = a.at("last_mi").get<double>();
      s.aggressive.inner_steps = a.at("inner_steps").get<long>();
      s.aggressive.until = a.value("until", 0L);
      s.aggressive.epoch = a.at("epoch").get<uint64_t>();
      s.aggressive.position = a.at("position").get<uint64_t>();
      require(s.aggressive.epochs >= 0 && s.aggressive.inner_steps >= 0 && std::isfinite(s.aggressive.last_mi) &&
                  s.aggressive.until >= 0 && s.aggressive.until <= s.step && (s.aggressive.until == 0 || !s.aggressive.on),
              "train_state " + j.dump() +
                  " has an impossible aggressive phase (negative or non-finite entries, or an end after its step or "
                  "while the phase is still on)");
    }
    require(s.step >= 0 && s.best_step >= 0 && s.best_step <= s.step && s.nonfinite_skipped >= 0 &&
                std::isfinite(s.best_valid) && s.best_valid >= 0,
            "train_state " + j.dump() + " is impossible (negative or non-finite entries)");
    return s;
  }
};

// What a checkpoint says about itself, read before a model is built.
struct CheckpointInfo {
  std::string path, model, structure;
  Config config;
  Vocab vocab;
  bool has_optimizer = false;
  bool has_train_state = false;
  TrainState state;
};

namespace detail {
inline const std::string& meta(const SafetensorsFile& f, const std::string& path, const std::string& key) {
  auto it = f.metadata.find(key);
  require(it != f.metadata.end(), "checkpoint " + path + ": metadata '" + key + "' is missing");
  return it->second;
}

inline CheckpointInfo checkpoint_info(const SafetensorsFile& f, const std::string& path) {
  CheckpointInfo info;
  info.path = path;
  const std::string& format = meta(f, path, "format");
  require(format == checkpoint_format,
          "checkpoint " + path + ": format '" + format + "' is not a couplevae checkpoint");
  const std::string& version = meta(f, path, "format_version");
  require(version == std::to_string(checkpoint_version),
          "checkpoint " + path + ": format version " + version + " is not supported (this build reads version " +
              std::to_string(checkpoint_version) + ")");
  info.model = meta(f, path, "model");
  info.structure = meta(f, path, "structure");
  try {
    info.config = Config::from_json(nlohmann::json::parse(meta(f, path, "config")));
    auto words = nlohmann::json::parse(meta(f, path, "vocab")).get<std::vector<std::string>>();
    info.vocab = Vocab::from_words(std::move(words));
    auto ts = f.metadata.find("train_state");
    if (ts != f.metadata.end()) {
      info.state = TrainState::from_json(nlohmann::json::parse(ts->second));
      info.has_train_state = true;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint " + path + ": bad metadata: " + e.what());
  } catch (const Error& e) {
    throw Error("checkpoint " + path + ": bad metadata: " + e.what());
  }
  require(int(info.vocab.size()) == info.config.vocab_size,
          "checkpoint " + path + ": the vocabulary has " + std::to_string(info.vocab.size()) +
              " words but the config says vocab_size " + std::to_string(info.config.vocab_size));
  info.has_optimizer = f.find("optimizer.m." + f.tensors.front().name) != nullptr;
  return info;
}

template <class T>
std::vector<float> to_float(const T* p, size_t n) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = float(p[i]);
  return out;
}
}  // namespace detail

inline CheckpointInfo read_checkpoint_info(const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  require(!f.tensors.empty(), "checkpoint " + path + ": holds no tensors");
  return detail::checkpoint_info(f, path);
}

// Writes the model (and, when given, the optimizer and the training state) to path.
template <class M>
void save_checkpoint(const std::string& path, M& model, const std::string& model_name, const Vocab& vocab,
                     Adam<typename M::scalar, typename M::backend>* opt = nullptr, const TrainState* state = nullptr) {
  using T = typename M::scalar;
  auto& ar = model.arena();
  const auto values = ar.values().to_host();
  std::vector<std::vector<float>> storage;
  std::vector<TensorRef> refs;
  storage.reserve(ar.infos().size() * 3);
  auto add = [&](const std::string& name, const ParamInfo& p, const std::vector<T>& src) {
    storage.push_back(detail::to_float(src.data() + p.offset, p.size));
    refs.push_back({name, std::vector<int64_t>(p.shape.begin(), p.shape.end()), storage.back().data()});
  };
  for (const auto& p : ar.infos()) add(p.name, p, values);
  if (opt) {
    const auto m = opt->first_moment().to_host(), v = opt->second_moment().to_host();
    for (const auto& p : ar.infos()) add("optimizer.m." + p.name, p, m);
    for (const auto& p : ar.infos()) add("optimizer.v." + p.name, p, v);
  }
  std::map<std::string, std::string> md{{"format", checkpoint_format},
                                        {"format_version", std::to_string(checkpoint_version)},
                                        {"model", model_name},
                                        {"structure", M::structure()},
                                        {"config", model.config().to_json().dump()},
                                        {"vocab", nlohmann::json(vocab.words()).dump()}};
  if (state) {
    md["train_state"] = state->to_json().dump();
    md["optimizer_steps"] = std::to_string(opt ? opt->steps() : 0);
    if (opt && opt->is_split()) md["optimizer_inference_steps"] = std::to_string(opt->inference_steps());
  }
  save_safetensors(path, refs, md);
}

// Loads parameters (and optionally the optimizer) into a model built from the checkpoint's
// config. Returns the checkpoint's description.
template <class M>
CheckpointInfo load_checkpoint(const std::string& path, M& model,
                               Adam<typename M::scalar, typename M::backend>* opt = nullptr) {
  using T = typename M::scalar;
  const SafetensorsFile f = load_safetensors(path);
  require(!f.tensors.empty(), "checkpoint " + path + ": holds no tensors");
  CheckpointInfo info = detail::checkpoint_info(f, path);
  require(info.structure == M::structure(), "checkpoint " + path + ": it holds a " + info.structure + " model ('" +
                                                info.model + "'), not a " + M::structure());
  const auto want = model.config().architecture(), have = info.config.architecture();
  require(want == have, "checkpoint " + path + ": architecture " + have.dump() +
                            " does not match the model's " + want.dump());
  auto& ar = model.arena();
  auto copy_set = [&](const std::string& prefix, Buffer<T, typename M::backend>& dst, bool non_negative = false) {
    std::vector<T> host(ar.total(), T(0));
    for (const auto& p : ar.infos()) {
      const std::string name = prefix + p.name;
      const StoredTensor* t = f.find(name);
      require(t != nullptr, "checkpoint " + path + ": tensor '" + name + "' is missing");
      require(t->shape == std::vector<int64_t>(p.shape.begin(), p.shape.end()),
              "checkpoint " + path + ": tensor '" + name + "' has the wrong shape");
      for (size_t k = 0; k < p.size; ++k) {
        require(std::isfinite(t->data[k]), "checkpoint " + path + ": tensor '" + name + "' holds a non-finite value (" +
                                               std::to_string(t->data[k]) + ") at element " + std::to_string(k));
        require(!non_negative || t->data[k] >= 0, "checkpoint " + path + ": tensor '" + name +
                                                      "' holds a negative second moment at element " + std::to_string(k));
        host[p.offset + k] = T(t->data[k]);
      }
    }
    dst.from_host(host.data(), host.size());
  };
  size_t expected = ar.infos().size();
  const bool has_opt = f.find("optimizer.m." + ar.infos().front().name) != nullptr;
  if (has_opt) expected *= 3;
  require(f.tensors.size() == expected, "checkpoint " + path + ": holds " + std::to_string(f.tensors.size()) +
                                            " tensors, expected " + std::to_string(expected));
  copy_set("", ar.values());
  info.has_optimizer = has_opt;
  if (opt) {
    require(has_opt, "checkpoint " + path + ": holds no optimizer state to resume from (it is not a training checkpoint)");
    copy_set("optimizer.m.", opt->first_moment());
    copy_set("optimizer.v.", opt->second_moment(), true);
    auto count = [&](const char* key) {
      auto it = f.metadata.find(key);
      require(it != f.metadata.end(), "checkpoint " + path + ": metadata '" + key + "' is missing");
      long steps = -1;
      const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), steps);
      require(ec == std::errc() && end == it->second.data() + it->second.size() && steps >= 0,
              "checkpoint " + path + ": metadata '" + key + "' is not a non-negative integer ('" + it->second + "')");
      return steps;
    };
    opt->set_steps(count("optimizer_steps"));
    // An optimiser with groups: the inference network's own count (the same when absent).
    if (opt->is_split())
      opt->set_inference_steps(f.metadata.count("optimizer_inference_steps") ? count("optimizer_inference_steps")
                                                                            : opt->steps());
  }
  return info;
}

}  // namespace couplevae
