// fuzz_checkpoint: the checkpoint loader (train/safetensors.hpp, train/checkpoint.hpp) as the
// tool uses it: read_checkpoint_info(), then load_checkpoint() into a model with Adam (the
// --resume path). The bytes are written to a file (the loader reads files) in /dev/shm.
// Seeds: make_seeds writes valid checkpoints of the tiny couple-vae of fuzz_common.hpp.
// Invariant: after a successful load every parameter and moment is finite.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <couplevae/model/coupled.hpp>
#include <couplevae/model/registry.hpp>
#include <couplevae/train/checkpoint.hpp>

#include "fuzz_common.hpp"

using namespace couplevae;

namespace {
using Net = Coupled<models::VAE>;

std::string scratch_path() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  return (dir / ("couplevae_fuzz_checkpoint_" + std::to_string(::getpid()) + ".safetensors")).string();
}

template <class T, class B>
bool all_finite(const Buffer<T, B>& b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(b.data()[i])) return false;
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  static Net model(fuzz::tiny_config(), 0);
  static Adam<float> adam(model.arena(), model.config());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  return fuzz::refuse_or_accept([&] {
    const CheckpointInfo info = read_checkpoint_info(path);
    fuzz::expect(int(info.vocab.size()) == info.config.vocab_size, "vocabulary and config disagree");
    load_checkpoint(path, model, info.has_train_state ? &adam : nullptr);
    const size_t n = model.arena().total();
    fuzz::expect(all_finite(model.arena().values(), n), "a loaded parameter is not finite");
    if (info.has_train_state) {
      fuzz::expect(all_finite(adam.first_moment(), n) && all_finite(adam.second_moment(), n),
                   "a loaded Adam moment is not finite");
      fuzz::expect(info.state.step >= 0, "a negative step was accepted");
    }
  });
}
