// cli_cuda.cu: the couplevae tool's commands on the cuda backend (--backend cuda), compiled
// by nvcc and linked into the tool when the project is configured with COUPLEVAE_WITH_CUDA=ON.
#include <couplevae/couplevae.hpp>
#include <couplevae/cuda.cuh>

#include "cli_commands.hpp"
#include "cli_cuda.hpp"

namespace couplevae::cli {

const CudaCommands& cuda_commands() {
  cuda_rt::require_device();
  static const CudaCommands commands{
      [](const TrainArgs& a) { return run_train<cuda>(a); },
      [](const EvalArgs& a) { return run_eval<cuda>(a); },
      [](const SampleArgs& a) { return run_sample<cuda>(a); },
      [](const InterpolateArgs& a) { return run_interpolate<cuda>(a, 200); },
  };
  return commands;
}

}  // namespace couplevae::cli
