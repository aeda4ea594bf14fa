// make_seeds: writes the starting corpora of the fuzz targets into DIR/{corpus,vocab,
// checkpoint,cli}/ (generated, so the repository holds no binary files).
//   make_seeds DIR
#include <filesystem>
#include <fstream>
#include <iostream>

#include <couplevae/model/coupled.hpp>
#include <couplevae/model/registry.hpp>
#include <couplevae/train/checkpoint.hpp>

#include "fuzz_common.hpp"

using namespace couplevae;
namespace fs = std::filesystem;

namespace {
void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}
std::string args(std::initializer_list<std::string> a) {
  std::string s;
  for (const auto& w : a) s += w + std::string(1, '\0');
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds DIR\n";
    return 2;
  }
  const fs::path root = argv[1];
  put(root / "corpus", "ptb", std::string(1, char(20 << 1)) + " the cat sat on the mat\n a <unk> ran\n\n the end \n");
  put(root / "corpus", "yelp", std::string(1, char(1 | (8 << 1))) + "4 good food\r\n0 bad\r\n3 ok ok ok ok ok ok ok ok ok ok\r\n");
  put(root / "corpus", "utf8", std::string(1, char(10 << 1)) + "\xEF\xBB\xBF" "caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 5\n");
  put(root / "vocab", "text", std::string("\x05\x00", 2) + "a b c a b a d e f g h i j k a b");
  put(root / "vocab", "json", std::string("\x00\x01", 2) + R"(["<pad>","<go>","<eos>","<unk>","the","cat"])");

  Coupled<models::VAE> model(fuzz::tiny_config(), 0);
  Adam<float> adam(model.arena(), model.config());
  fs::create_directories(root / "checkpoint");
  save_checkpoint((root / "checkpoint" / "model.safetensors").string(), model, "couple-vae", fuzz::tiny_vocab());
  TrainState st;
  st.step = 3;
  st.best_step = 2;
  st.best_valid = 12.5;
  save_checkpoint((root / "checkpoint" / "train.safetensors").string(), model, "couple-vae", fuzz::tiny_vocab(), &adam,
                  &st);

  put(root / "cli", "train", args({"train", "--model", "couple-vae", "--data", "d", "--steps", "10", "--latent", "4",
                                   "--dilations", "1", "2", "--lambda-c", "0.5", "--coupling", "euclidean"}));
  put(root / "cli", "eval", args({"eval", "--checkpoint", "c.safetensors", "--data", "d", "--metrics", "nll,mi",
                                  "--samples", "5", "--split", "valid"}));
  put(root / "cli", "sample", args({"sample", "--checkpoint", "c", "--n", "3", "--temperature", "0.7"}));
  put(root / "cli", "corpus", args({"make-corpus", "--out", "o", "--train-lines", "20"}));
  put(root / "cli", "report", args({"report", "--runs", "a", "b", "--out", "-", "--squared"}));
  std::cout << "wrote seeds under " << root.string() << "\n";
  return 0;
}
