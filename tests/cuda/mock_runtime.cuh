// What the stand-in CUDA runtime of mock_runtime.cpp has seen (ctest cuda.mock).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

namespace mock {

struct Counters {
  size_t eager_launches = 0;      // kernels launched outside captures
  size_t eager_gemms = 0;         // cuBLAS GEMMs outside captures
  size_t uploads = 0;             // host-to-device copies outside captures
  size_t captures = 0;            // cudaStreamBeginCapture calls
  size_t patches = 0;             // cudaGraphExecKernelNodeSetParams calls accepted
  size_t graph_launches = 0;      // cudaGraphLaunch calls
  size_t illegal_in_capture = 0;  // operations a real capture refuses
  size_t mallocs = 0;             // cudaMalloc calls
};
extern Counters counters;
// cudaGraphInstantiate fails this many more times (as a driver that refuses a graph would)
extern size_t failing_instantiations;
// called with each kernel launch's function and argument pointers, when set
extern std::function<void(const void* func, void** args)> on_launch;

}  // namespace mock
