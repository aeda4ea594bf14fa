// couplevae/backend/cuda/runtime.cuh: the cuda backend's runtime state and error checks.
//
// Every CUDA runtime and cuBLAS call goes through check() / check_blas(), which turn a
// failure into couplevae::Error naming the call, the source place and the driver's message.
// Runtime is per host thread: one non-blocking stream that every kernel, copy and cuBLAS
// call of the thread is queued on (so work is ordered without host synchronisation), one
// cuBLAS handle bound to it, a small device scratch for reductions, a vector of ones (the
// column sums' GEMM), and the pinned staging
// of host-to-device copies (upload(): a training step never waits for the device).
// device_count()
// never throws (0 without a driver or device); require_device() throws the error the
// command-line tool prints for --backend cuda on a machine without a GPU.
// A cuda model and its buffers belong to the host thread that uses them (its stream orders
// their work); evaluation on cuda runs its batches on one thread (eval/nll.hpp).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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

// Host-to-device copies of small host arrays (token ids, row maps: a few KB a step) go
// through two pinned halves, so that the copy is asynchronous: from pageable memory the
// driver may wait for the stream first. The source is copied into the current half at once
// (the caller may reuse it on return) and the DMA is queued on the stream. When a half is
// full the other one is reused, after the copies queued from it have run (an event recorded
// when it filled up, normally long done). Copies larger than a half go directly.
class Staging {
 public:
  static constexpr size_t half_bytes = size_t(1) << 18;

  Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() {
    if (!base_) return;
    cudaEventSynchronize(filled_[0]);
    cudaEventSynchronize(filled_[1]);
    cudaEventDestroy(filled_[0]);
    cudaEventDestroy(filled_[1]);
    cudaFreeHost(base_);
  }

  void upload(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    if (bytes == 0) return;
    if (bytes > half_bytes) {
      COUPLEVAE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
      return;
    }
    if (!base_) {
      COUPLEVAE_CUDA(cudaMallocHost(&base_, 2 * half_bytes));
      COUPLEVAE_CUDA(cudaEventCreateWithFlags(&filled_[0], cudaEventDisableTiming));
      COUPLEVAE_CUDA(cudaEventCreateWithFlags(&filled_[1], cudaEventDisableTiming));
    }
    size_t at = (used_ + 255) & ~size_t(255);
    if (at + bytes > half_bytes) {
      COUPLEVAE_CUDA(cudaEventRecord(filled_[half_], s));
      half_ ^= 1;
      COUPLEVAE_CUDA(cudaEventSynchronize(filled_[half_]));  // returns at once if never recorded
      at = 0;
    }
    char* p = base_ + half_ * half_bytes + at;
    std::memcpy(p, src, bytes);
    COUPLEVAE_CUDA(cudaMemcpyAsync(dst, p, bytes, cudaMemcpyHostToDevice, s));
    used_ = at + bytes;
  }

 private:
  char* base_ = nullptr;
  cudaEvent_t filled_[2] = {nullptr, nullptr};
  int half_ = 0;
  size_t used_ = 0;
};

// The runtime's recurrence switches for a mode name (COUPLEVAE_CUDA_RECURRENCE).
struct RecurrenceMode {
  bool fused, persistent;
};
inline RecurrenceMode recurrence_mode(const std::string& mode) {
  if (mode != "fused" && mode != "composed" && mode != "persistent")
    throw Error("COUPLEVAE_CUDA_RECURRENCE: expected fused, composed or persistent (got '" + mode + "')");
  return {mode != "composed", mode == "persistent"};
}

// How device work is issued (backend/cuda/graph.cuh): directly, recorded into a graph being
// captured, or only compared with a captured graph's record.
enum class GraphMode { eager, capture, replay };
class StepRecord;

// COUPLEVAE_CUDA_GRAPHS: "1"/"on" or "0"/"off".
inline bool graphs_switch(const std::string& v) {
  if (v == "1" || v == "on") return true;
  if (v == "0" || v == "off") return false;
  throw Error("COUPLEVAE_CUDA_GRAPHS: expected 1, on, 0 or off (got '" + v + "')");
}

// COUPLEVAE_CUDA_ROWS_MAX: a whole number of rows, 0 to 1000000 (digits only).
inline int rows_max_setting(const std::string& v) {
  long n = 0;
  bool ok = !v.empty() && v.size() <= 7;
  for (const char c : v) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) n = 10 * n + (c - '0');
  }
  if (!ok || n > 1000000)
    throw Error("COUPLEVAE_CUDA_ROWS_MAX: expected a whole number of rows from 0 to 1000000 (got '" + v + "')");
  return int(n);
}

struct Runtime {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  double* scratch = nullptr;  // one double: the target of launch<cuda>::sum
  unsigned* barrier = nullptr;  // the grid barrier's counter of the persistent kernels (recurrence.cuh)
  // ones_count ones in float and in double: the column sums of ops<cuda>::col_sum_acc are a
  // GEMM with them (allocated here, so that no step allocates)
  static constexpr int ones_count = 1 << 16;
  float* ones_f = nullptr;
  double* ones_d = nullptr;
  template <class T>
  const T* ones() const {
    if constexpr (sizeof(T) == sizeof(float))
      return reinterpret_cast<const T*>(ones_f);
    else
      return reinterpret_cast<const T*>(ones_d);
  }
  Staging staging;
  // How the GRU recurrence runs (backend/cuda/recurrence.cuh):
  //   fused_recurrence      each forward step as one kernel, rather than a copy, a cuBLAS GEMM
  //                         and a gate kernel (the composed path, as on the cpu);
  //   persistent_recurrence each whole pass, forward and backward, as one persistent kernel
  //                         (off: it has not run on a GPU yet; tests/cuda checks it).
  // Set them here, or for any program with COUPLEVAE_CUDA_RECURRENCE=fused (the default),
  // composed or persistent (read when a thread's runtime is created).
  bool fused_recurrence = true;
  bool persistent_recurrence = false;
  // The largest per-step product of the recurrence (rows) that runs our own row kernels
  // (rows_gemm, and a fused backward step) rather than cuBLAS; also
  // COUPLEVAE_CUDA_ROWS_MAX=N. 64 has not been weighed against others on a GPU yet.
  int rows_kernel_max = 64;
  size_t persistent_passes = 0;  // passes the persistent kernels have run (they may decline)
  // Whole training steps as CUDA Graphs on bucketed batches of graph_bucket (graph.cuh);
  // also COUPLEVAE_CUDA_GRAPHS=1. Off by default until measured on a GPU. A graph's key holds
  // the batch's longest length (the CNN decoder's layout follows it), so a bucket of 1 (every
  // sentence padded to the longest) gives as many graphs as any larger one, with the least
  // padding.
  bool step_graphs = false;
  int graph_bucket = 1;
  GraphMode graph_mode = GraphMode::eager;
  StepRecord* recording = nullptr;  // the step being captured or replayed
  size_t alloc_generation = 0;      // device allocations and frees so far (graphs hold addresses)
  void* blas_workspace = nullptr;   // cuBLAS's, set once so that a capture never allocates
  static constexpr size_t blas_workspace_bytes = size_t(32) << 20;

  Runtime() {
    require_device();
    if (const char* e = std::getenv("COUPLEVAE_CUDA_RECURRENCE")) set_recurrence(e);
    if (const char* e = std::getenv("COUPLEVAE_CUDA_GRAPHS")) step_graphs = graphs_switch(e);
    if (const char* e = std::getenv("COUPLEVAE_CUDA_ROWS_MAX")) rows_kernel_max = rows_max_setting(e);
    COUPLEVAE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    COUPLEVAE_CUBLAS(cublasCreate(&blas));
    COUPLEVAE_CUBLAS(cublasSetStream(blas, stream));
    COUPLEVAE_CUDA(cudaMalloc(&blas_workspace, blas_workspace_bytes));
    COUPLEVAE_CUBLAS(cublasSetWorkspace(blas, blas_workspace, blas_workspace_bytes));
    COUPLEVAE_CUDA(cudaMalloc(&scratch, sizeof(double)));
    COUPLEVAE_CUDA(cudaMalloc(&barrier, sizeof(unsigned)));
    COUPLEVAE_CUDA(cudaMalloc(&ones_f, ones_count * sizeof(float)));
    COUPLEVAE_CUDA(cudaMalloc(&ones_d, ones_count * sizeof(double)));
    const std::vector<float> one_f(ones_count, 1.0f);
    const std::vector<double> one_d(ones_count, 1.0);
    COUPLEVAE_CUDA(cudaMemcpyAsync(ones_f, one_f.data(), ones_count * sizeof(float), cudaMemcpyHostToDevice, stream));
    COUPLEVAE_CUDA(cudaMemcpyAsync(ones_d, one_d.data(), ones_count * sizeof(double), cudaMemcpyHostToDevice, stream));
    COUPLEVAE_CUDA(cudaStreamSynchronize(stream));  // the host vectors go now
  }
  // mode: fused, composed or persistent (the switches above); anything else is an Error.
  void set_recurrence(const std::string& mode) {
    const RecurrenceMode m = recurrence_mode(mode);
    fused_recurrence = m.fused;
    persistent_recurrence = m.persistent;
  }
  // The mode the switches give: persistent, fused or composed.
  const char* recurrence() const { return persistent_recurrence ? "persistent" : fused_recurrence ? "fused" : "composed"; }
  ~Runtime() {
    if (stream) cudaStreamSynchronize(stream);
    if (scratch) cudaFree(scratch);
    if (barrier) cudaFree(barrier);
    if (ones_f) cudaFree(ones_f);
    if (ones_d) cudaFree(ones_d);
    if (blas) cublasDestroy(blas);
    if (blas_workspace) cudaFree(blas_workspace);
    if (stream) cudaStreamDestroy(stream);
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Waits for the stream (never inside a captured step).
  void sync() {
    outside_graphs("waiting for the device");
    COUPLEVAE_CUDA(cudaStreamSynchronize(stream));
  }
  // dst (device) = src (host, bytes), queued on the stream; src may be reused on return
  // (graph.cuh: inside a captured step, through the graph's landing area).
  inline void upload(void* dst, const void* src, size_t bytes);
  // Throws a GraphMismatch naming `what` when called inside a captured or replayed step
  // (graph.cuh): allocations and host reads have no place in a graph.
  inline void outside_graphs(const char* what) const;
};

// This host thread's runtime, created on first use.
inline Runtime& runtime() {
  thread_local Runtime rt;
  return rt;
}
inline cudaStream_t stream() { return runtime().stream; }

}  // namespace couplevae::cuda_rt

// Runtime::upload and Runtime::outside_graphs, the capture and replay of whole steps.
#include "graph.cuh"
