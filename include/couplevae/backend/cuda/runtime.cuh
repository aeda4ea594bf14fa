// couplevae/backend/cuda/runtime.cuh: the cuda backend's runtime state and error checks.
//
// Every CUDA runtime and cuBLAS call goes through check() / check_blas(), which turn a
// failure into couplevae::Error naming the call, the source place and the driver's message.
// Runtime is per host thread: one non-blocking stream that every kernel, copy and cuBLAS
// call of the thread is queued on (so work is ordered without host synchronisation), one
// cuBLAS handle bound to it, and a small device scratch for reductions. device_count()
// never throws (0 without a driver or device); require_device() throws the error the
// command-line tool prints for --backend cuda on a machine without a GPU.
// A cuda model and its buffers belong to the host thread that uses them (its stream orders
// their work); evaluation on cuda runs its batches on one thread (eval/nll.hpp).
#pragma once
#include <cstddef>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../../core/error.hpp"

namespace couplevae::cuda_rt {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw Error(std::string("couplevae cuda: ") + what + " failed at " + file + ":" + std::to_string(line) + ": " +
                cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
inline void check_blas(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("couplevae cuda: ") + what + " failed at " + file + ":" + std::to_string(line) +
                ": cuBLAS status " + std::to_string(int(s)));
}

#define COUPLEVAE_CUDA(call) ::couplevae::cuda_rt::check((call), #call, __FILE__, __LINE__)
#define COUPLEVAE_CUBLAS(call) ::couplevae::cuda_rt::check_blas((call), #call, __FILE__, __LINE__)
// After a kernel launch: configuration errors now, execution errors at the next sync.
#define COUPLEVAE_CUDA_LAUNCHED(name) ::couplevae::cuda_rt::check(cudaGetLastError(), name, __FILE__, __LINE__)

// Number of usable CUDA devices; 0 when there is no driver or no device.
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

// Throws a clear Error when no device can run the cuda backend.
inline void require_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    throw Error(std::string("the cuda backend needs a CUDA device, and none is usable here (") +
                (e != cudaSuccess ? std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)
                                  : std::string("cudaGetDeviceCount found 0 devices")) +
                "); use the cpu backend instead (the couplevae tool: --backend cpu)");
  }
}

struct Runtime {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  double* scratch = nullptr;  // one double: the target of launch<cuda>::sum

  Runtime() {
    require_device();
    COUPLEVAE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    COUPLEVAE_CUBLAS(cublasCreate(&blas));
    COUPLEVAE_CUBLAS(cublasSetStream(blas, stream));
    COUPLEVAE_CUDA(cudaMalloc(&scratch, sizeof(double)));
  }
  ~Runtime() {
    if (scratch) cudaFree(scratch);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  void sync() { COUPLEVAE_CUDA(cudaStreamSynchronize(stream)); }
};

// This host thread's runtime, created on first use.
inline Runtime& runtime() {
  thread_local Runtime rt;
  return rt;
}
inline cudaStream_t stream() { return runtime().stream; }

}  // namespace couplevae::cuda_rt
