// fuzz_cli: the command-line parser of the couplevae tool (examples/cli_args.hpp) and every
// check of the values it applies before reading any file (model name, preset, sizes,
// steps, options of each command).
//
// The bytes are split on NUL into at most 64 arguments after "couplevae". Help output and
// the parser's one-line errors go to the (closed) standard streams.
#include <vector>

#include "../examples/cli_args.hpp"
#include "fuzz_common.hpp"

using namespace couplevae;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> words{"couplevae"};
  std::string cur;
  for (size_t i = 0; i < size && words.size() < 64; ++i) {
    if (data[i] == 0) {
      words.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(char(data[i]));
    }
  }
  if (!cur.empty() && words.size() < 64) words.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());

  cli::CommandLine cl;
  if (cl.parse(int(argv.size()), argv.data()) >= 0) return 0;  // help or a refused flag
  return fuzz::refuse_or_accept([&] {
    if (*cl.train_cmd) {
      cli::train_options(cl.train);
      const Config c = cli::train_config(cl.train, 10002);
      fuzz::expect(c.steps >= 1 && c.batch_size >= 1 && c.latent >= 1, "an impossible config was accepted");
    } else if (*cl.eval_cmd) {
      cli::eval_metrics(cl.eval);
    } else if (*cl.sample_cmd) {
      cli::check_sample_args(cl.sample);
    } else if (*cl.corpus_cmd) {
      cli::check_corpus_args(cl.corpus);
    }
  });
}
