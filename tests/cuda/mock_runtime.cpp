// A stand-in for the CUDA runtime and cuBLAS entry points the cuda backend calls, so that the
// host side of the backend (the CUDA Graph capture and replay of backend/cuda/graph.cuh, the
// buffers, the upload staging) runs on a machine without a GPU (ctest cuda.mock).
//
// The program links the real shared libcudart and libcublas; the definitions here take their
// place (an executable's symbols come first). "Device memory" is host memory; kernels and
// GEMMs are not run (their arithmetic is what cuda.device checks on a GPU), only counted;
// copies and memsets are done. Stream capture records nodes as the real runtime does and
// refuses what it refuses: a wait for the stream, an event record, a free, or a copy from
// pageable host memory inside a capture invalidate it. cudaGraphLaunch runs the copy and
// memset nodes of a graph, so data uploaded through a graph arrives.
//
// couplevae_bench_host (bench/CMakeLists.txt) runs the benchmark on this runtime to time the
// backend's host code alone; with COUPLEVAE_MOCK_DEVICE_WORK=0 in the environment the memsets
// and the device-to-device copies are skipped too (they are device work, and for large
// buffers the host's memset would dominate that timing).
#include "mock_runtime.cuh"

#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

namespace mock {

Counters counters;
size_t failing_instantiations = 0;
std::function<void(const void*, void**)> on_launch;

namespace {
struct Node {
  enum Kind { kernel, copy, set, gemm } kind;
  const void* func = nullptr;
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
  int value = 0;
};
struct Graph {
  std::vector<Node> nodes;
  const Graph* from = nullptr;  // an executable graph: the graph it was instantiated from
};
std::set<const Graph*> live_graphs;  // captured and not destroyed
struct Stream {
  Graph* capture = nullptr;  // the graph being captured
  bool invalid = false;
};
std::map<const void*, size_t> pinned;  // host allocations of cudaHostAlloc: start -> size
std::vector<cudaGraphNode_t> leaf(1);  // cudaStreamGetCaptureInfo's answer

bool is_pinned(const void* p) {
  auto it = pinned.upper_bound(p);
  if (it == pinned.begin()) return false;
  --it;
  return static_cast<const char*>(p) < static_cast<const char*>(it->first) + it->second;
}
Stream* of(cudaStream_t s) { return reinterpret_cast<Stream*>(s); }
cudaGraphNode_t node_handle(size_t i) { return reinterpret_cast<cudaGraphNode_t>(i + 1); }
// The capture an operation joins, or null; an illegal operation invalidates it.
Graph* capturing(cudaStream_t s) { return s && of(s)->capture ? of(s)->capture : nullptr; }
cudaError_t refuse(cudaStream_t s) {
  of(s)->invalid = true;
  ++counters.illegal_in_capture;
  return cudaErrorStreamCaptureUnsupported;
}
const bool device_work = [] {
  const char* v = std::getenv("COUPLEVAE_MOCK_DEVICE_WORK");
  return !(v && std::strcmp(v, "0") == 0);
}();
void run_node(const Node& n) {
  if (n.kind == Node::copy && (device_work || is_pinned(n.src))) std::memmove(n.dst, n.src, n.bytes);
  if (n.kind == Node::set && device_work) std::memset(n.dst, n.value, n.bytes);
}
cudaStream_t only_stream = nullptr;  // the backend uses one stream per thread
}  // namespace

}  // namespace mock

using namespace mock;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  *value = attr == cudaDevAttrCooperativeLaunch ? 1 : attr == cudaDevAttrMultiProcessorCount ? 132 : 0;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n, const void*, int, size_t, unsigned) {
  *n = 2;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *free = size_t(70) << 30, *total = size_t(80) << 30;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "mockError"; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "refused by the mock runtime"; }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = reinterpret_cast<cudaStream_t>(new Stream);
  only_stream = *s;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete of(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (capturing(s)) return refuse(s);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::calloc(bytes ? bytes : 1, 1);
  ++counters.mallocs;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (only_stream && capturing(only_stream)) return refuse(only_stream);  // frees wait for the device
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::malloc(bytes ? bytes : 1);
  pinned[*p] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  pinned.erase(p);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t s) {
  if (Graph* g = capturing(s)) {
    if (kind == cudaMemcpyHostToDevice && !is_pinned(src)) return refuse(s);
    g->nodes.push_back({Node::copy, nullptr, dst, src, bytes, 0});
    return cudaSuccess;
  }
  if (kind == cudaMemcpyHostToDevice) ++counters.uploads;
  if (device_work || kind != cudaMemcpyDeviceToDevice) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              enum cudaMemcpyKind, cudaStream_t s) {
  if (Graph* g = capturing(s)) {  // recorded as one node per row
    for (size_t r = 0; r < height; ++r)
      g->nodes.push_back({Node::copy, nullptr, static_cast<char*>(dst) + r * dpitch,
                          static_cast<const char*>(src) + r * spitch, width, 0});
    return cudaSuccess;
  }
  for (size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  if (Graph* g = capturing(s)) {
    g->nodes.push_back({Node::set, nullptr, p, nullptr, bytes, value});
    return cudaSuccess;
  }
  if (device_work) std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaLaunchKernel(const void* func, dim3, dim3, void** args, size_t, cudaStream_t s) {
  if (on_launch) on_launch(func, args);
  if (Graph* g = capturing(s)) {
    g->nodes.push_back({Node::kernel, func});
    leaf[0] = node_handle(g->nodes.size() - 1);
    return cudaSuccess;
  }
  ++counters.eager_launches;
  return cudaSuccess;
}
cudaError_t cudaLaunchCooperativeKernel(const void* func, dim3 grid, dim3 block, void** args, size_t smem,
                                        cudaStream_t s) {
  return cudaLaunchKernel(func, grid, block, args, smem, s);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = reinterpret_cast<cudaEvent_t>(new char);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<char*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t s) {
  if (capturing(s)) return refuse(s);  // the backend records events only outside captures
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode) {
  if (capturing(s)) return cudaErrorIllegalState;
  of(s)->capture = new Graph;
  of(s)->invalid = false;
  ++counters.captures;
  return cudaSuccess;
}
#if CUDART_VERSION >= 13000
cudaError_t cudaStreamGetCaptureInfo(cudaStream_t s, enum cudaStreamCaptureStatus* status, unsigned long long*,
                                     cudaGraph_t*, const cudaGraphNode_t** deps, const cudaGraphEdgeData**,
                                     size_t* n) {
#else
cudaError_t cudaStreamGetCaptureInfo_v2(cudaStream_t s, enum cudaStreamCaptureStatus* status, unsigned long long*,
                                        cudaGraph_t*, const cudaGraphNode_t** deps, size_t* n) {
#endif
  Graph* g = capturing(s);
  *status = !g ? cudaStreamCaptureStatusNone
               : of(s)->invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  if (deps) *deps = leaf.data();
  if (n) *n = g && !g->nodes.empty() ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* out) {
  Graph* g = of(s)->capture;
  of(s)->capture = nullptr;
  if (!g) return cudaErrorIllegalState;
  if (of(s)->invalid) {
    delete g;
    *out = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  live_graphs.insert(g);
  *out = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  if (failing_instantiations) {
    --failing_instantiations;
    return cudaErrorInvalidValue;
  }
  Graph* x = new Graph(*reinterpret_cast<Graph*>(g));
  x->from = reinterpret_cast<Graph*>(g);
  *exec = reinterpret_cast<cudaGraphExec_t>(x);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  live_graphs.erase(reinterpret_cast<Graph*>(g));
  delete reinterpret_cast<Graph*>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete reinterpret_cast<Graph*>(e);
  return cudaSuccess;
}
cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t e, cudaGraphNode_t node, const struct cudaKernelNodeParams* p) {
  Graph* g = reinterpret_cast<Graph*>(e);
  const size_t i = reinterpret_cast<size_t>(node) - 1;
  // A node handle belongs to the captured graph: once that is destroyed, the real runtime's
  // behaviour is undefined; the mock refuses. It refuses another function for a node too.
  if (!live_graphs.count(g->from)) return cudaErrorInvalidResourceHandle;
  if (i >= g->nodes.size() || g->nodes[i].kind != Node::kernel || g->nodes[i].func != p->func)
    return cudaErrorInvalidValue;
  ++counters.patches;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (capturing(s)) return refuse(s);
  for (const Node& n : reinterpret_cast<Graph*>(e)->nodes) run_node(n);
  ++counters.graph_launches;
  return cudaSuccess;
}

// --- cuBLAS ---
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  *h = reinterpret_cast<cublasHandle_t>(new cudaStream_t(nullptr));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete reinterpret_cast<cudaStream_t*>(h);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  *reinterpret_cast<cudaStream_t*>(h) = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t gemm(cublasHandle_t h) {
  const cudaStream_t s = *reinterpret_cast<cudaStream_t*>(h);
  if (Graph* g = capturing(s))
    g->nodes.push_back({Node::gemm});
  else
    ++counters.eager_gemms;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t, cublasOperation_t, int, int, int, const float*,
                              const float*, int, const float*, int, const float*, float*, int) {
  return gemm(h);
}
cublasStatus_t cublasDgemm_v2(cublasHandle_t h, cublasOperation_t, cublasOperation_t, int, int, int, const double*,
                              const double*, int, const double*, int, const double*, double*, int) {
  return gemm(h);
}

}  // extern "C"
