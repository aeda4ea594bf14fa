// couplevae: the command-line tool (an example program built with the project).
//
//   couplevae train --model NAME --data DIR [--preset ptb|yelp|yahoo] [--steps N]
//                   [--seed S] [--out DIR] [--lambda-c X] [--resume FILE] [--overwrite]
//                   [--track-every K] [--track-sentences N] [--max-nonfinite N] ...
//   couplevae eval  --checkpoint FILE --data DIR [--split test] [--samples N]
//                   [--max-sentences M] [--metrics nll] [--json] [--json-out FILE]
//   couplevae report --runs DIR... [--out FILE.md] [--plot FILE.svg] [--squared]
//   couplevae make-corpus --out DIR [--seed S]      (the toy corpus of the quick start)
//
// train, eval, sample and interpolate take --backend cpu|cuda: cuda runs the same commands
// on an NVIDIA GPU (cli_cuda.cu, built when the project is configured with
// COUPLEVAE_WITH_CUDA=ON). Errors (bad flags, bad values, bad files, a cuda request that
// cannot be met) print one line and exit with code 2.
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <iostream>
#include <sstream>

#include <couplevae/couplevae.hpp>
#include <couplevae/eval/dynamics.hpp>
#include <couplevae/eval/report.hpp>

#include "cli_args.hpp"
#include "cli_commands.hpp"
#include "cli_cuda.hpp"

using namespace couplevae;
using namespace couplevae::cli;

namespace {

int run_report(const ReportArgs& a) {
  namespace fs = std::filesystem;
  const auto& dirs = a.runs;
  const auto& out = a.out;
  std::string plot = a.plot;
  const bool squared = a.squared;
  require(!out.empty(), "--out must not be empty");
  if (plot.empty()) plot = out == "-" ? "report.svg" : fs::path(out).replace_extension(".svg").string();
  require(out == "-" || fs::absolute(plot) != fs::absolute(out), "--plot and --out name the same file");
  const ReportFiles r = write_report(dirs, out, plot, squared);
  FILE* notes = out == "-" ? stderr : stdout;
  if (out == "-")
    std::fputs(r.markdown.c_str(), stdout);
  else
    std::fprintf(notes, "wrote %s (%zu run%s)\n", out.c_str(), r.runs.size(), r.runs.size() == 1 ? "" : "s");
  if (!r.svg_path.empty()) std::fprintf(notes, "wrote %s\n", r.svg_path.c_str());
  for (const auto& run : r.runs)
    if (run.has_dynamics)
      std::fprintf(notes, "README %s/%s: float64 array (%zu rows, %zu columns): %s\n", run.dir.c_str(),
                   dynamics_npy_name, run.dynamics.rows.size(), run.dynamics.columns.size(),
                   run.dynamics.header().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine cl;
  if (const int rc = cl.parse(argc, argv); rc >= 0) return rc;
  try {
    if (*cl.train_cmd) return cl.train.backend == "cuda" ? cuda_commands().train(cl.train) : run_train<cpu>(cl.train);
    if (*cl.eval_cmd) return cl.eval.backend == "cuda" ? cuda_commands().eval(cl.eval) : run_eval<cpu>(cl.eval);
    if (*cl.sample_cmd)
      return cl.sample.backend == "cuda" ? cuda_commands().sample(cl.sample) : run_sample<cpu>(cl.sample);
    if (*cl.interp_cmd)
      return cl.interpolate.backend == "cuda" ? cuda_commands().interpolate(cl.interpolate)
                                              : run_interpolate<cpu>(cl.interpolate, 200);
    if (*cl.report_cmd) return run_report(cl.report);
    if (*cl.corpus_cmd) {
      check_corpus_args(cl.corpus);
      write_toy_corpus(cl.corpus.out, cl.corpus.seed, cl.corpus.train_lines);
      std::printf("wrote %s/train.txt valid.txt test.txt\n", cl.corpus.out.c_str());
      return 0;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "couplevae: error: %s\n", detail::one_line(e.what()).c_str());
    return 2;
  }
  return 0;
}
