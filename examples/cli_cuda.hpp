// cli_cuda.hpp: the couplevae tool's --backend cuda, seen from the host compiler.
//
// cuda_commands() returns the commands instantiated for the cuda backend by cli_cuda.cu
// (nvcc), which the tool links when the project is configured with COUPLEVAE_WITH_CUDA=ON
// (it then defines COUPLEVAE_CLI_CUDA). Without it, or on a machine without a usable GPU,
// asking for --backend cuda is an Error saying which, never a silent run on the CPU.
#pragma once
#include "cli_args.hpp"

namespace couplevae::cli {

struct CudaCommands {
  int (*train)(const TrainArgs&);
  int (*eval)(const EvalArgs&);
  int (*sample)(const SampleArgs&);
  int (*interpolate)(const InterpolateArgs&);
};

#if defined(COUPLEVAE_CLI_CUDA)
// Defined in cli_cuda.cu; throws Error when no CUDA device is usable.
const CudaCommands& cuda_commands();
#else
inline const CudaCommands& cuda_commands() {
  throw Error(
      "--backend cuda: this couplevae was built without the cuda backend; reconfigure with "
      "-DCOUPLEVAE_WITH_CUDA=ON (needs the CUDA Toolkit's nvcc) or use --backend cpu");
}
#endif

}  // namespace couplevae::cli
