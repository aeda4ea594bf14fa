// couplevae/backend/cuda/graph.cuh: whole training steps as CUDA Graphs, and the funnel every
// piece of device work of the cuda backend goes through.
//
// A training step issues several hundred kernels, cuBLAS calls, copies and memsets; issued
// one by one, the host's launch cost bounds the step (bench/gpu_notes.md). On bucketed
// batches (core/batch.hpp: every sentence padded to the longest, rounded up to the bucket)
// the steps of equal batch size, longest length and output rows (Batch::outputs, a multiple
// of 4 x batch) have the same shapes, so such a step is captured once into a CUDA Graph and
// then replayed with one launch.
// step_runner<cuda>::run(model, optimiser, batch, step, rewind) does it, per StepKey (model,
// optimiser, batch size, steps, longest length, output rows):
//   1st step of a key    eager (buffers reach their sizes for this shape);
//   2nd                  captured: the step's host code runs once with the stream in capture
//                        mode; every operation is recorded (GraphOp); the graph is
//                        instantiated and launched;
//   later                replayed: the host code runs again in replay mode, where nothing is
//                        issued; each operation is compared with the recorded one, and the
//                        graph is launched.
// The host code stays the single source of truth: what changes between steps of a bucket is
// found by the comparison, not declared.
//   - A kernel's arguments (noise positions, the KL weight, the learning rate, the step
//     number) are patched into its node (cudaGraphExecKernelNodeSetParams) when they differ.
//   - Host data uploaded inside a step (token ids, row maps, masks: Runtime::upload) goes
//     to a pinned landing area, copied to the device in one transfer before each launch;
//     the graph copies it on from there.
//   - cuBLAS calls, copies, memsets and cooperative launches are kept as captured; their
//     arguments must be equal (fixed_op).
// Anything else (an operation of another kind or shape, an allocation, a read back to the
// host) is a GraphMismatch: the step is rewound (rewind() restores the host state, the
// generator position) and run eagerly, and the key is captured again later (retry) or
// stays eager (GraphStats::last_fallback says why); so does an error inside a capture or a
// replay (an error of the step itself then comes from the eager run). Any allocation or
// free of device memory (Runtime::alloc_generation) frees every graph: their nodes hold
// addresses. (A stale graph would not be replayed wrongly either: its copies, memsets and
// cuBLAS calls compare their addresses.)
// Off unless Runtime::step_graphs is set (or COUPLEVAE_CUDA_GRAPHS=1): bucketing changes the
// dropout noise of a run (more rows draw from the generator), and graphs have not yet run on
// a GPU (tests/cuda checks replayed steps against eager ones).
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../core/batch.hpp"
#include "../launch.hpp"
#include "runtime.cuh"

namespace couplevae::cuda_rt {

// A step that cannot be captured or replayed as recorded; retry: capture again later.
struct GraphMismatch : Error {
  bool retry;
  GraphMismatch(const std::string& what, bool again) : Error("CUDA Graph: " + what), retry(again) {}
};

// One recorded operation of a captured step.
struct GraphOp {
  enum Kind { kernel, fixed, upload } kind = kernel;
  cudaGraphNode_t node = nullptr;  // kernel: its node in the captured graph
  const void* func = nullptr;      // kernel
  dim3 grid, block;
  unsigned smem = 0;
  std::string bytes;               // kernel: its arguments; fixed: its signature
  void* dst = nullptr;             // upload: destination, bytes, offset in the landing area
  size_t size = 0, offset = 0;
};

// Bytes of trivially copyable values (a string: its characters; a struct with fields(): its
// fields' bytes, without the padding between them), one after another.
inline void append_bytes(std::string& s, const std::string& v) { s += v; }
template <class A>
void append_bytes(std::string& s, const A& v) {
  if constexpr (requires { v.fields(); }) {
    std::apply([&](const auto&... f) { (append_bytes(s, f), ...); }, v.fields());
  } else {
    static_assert(std::is_trivially_copyable_v<A>, "couplevae: a graph signature holds trivially copyable values");
    s.append(reinterpret_cast<const char*>(&v), sizeof(A));
  }
}
template <class... A>
std::string serialize(const A&... a) {
  std::string s;
  s.reserve((sizeof(A) + ... + 0));
  (append_bytes(s, a), ...);
  return s;
}

// A captured step: its operations, its executable graph and its landing area.
class StepRecord {
 public:
  explicit StepRecord(size_t landing_bytes) : capacity_(landing_bytes) {
    COUPLEVAE_CUDA(cudaMallocHost(&host_, capacity_));
    COUPLEVAE_CUDA(cudaMalloc(&dev_, capacity_));
    COUPLEVAE_CUDA(cudaEventCreateWithFlags(&landed_, cudaEventDisableTiming));
  }
  StepRecord(const StepRecord&) = delete;
  StepRecord& operator=(const StepRecord&) = delete;
  ~StepRecord() {
    if (landed_) cudaEventSynchronize(landed_);
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    if (landed_) cudaEventDestroy(landed_);
    if (dev_) cudaFree(dev_);
    if (host_) cudaFreeHost(host_);
  }

  // --- capture ---
  void add_kernel(const void* func, dim3 grid, dim3 block, unsigned smem, std::string bytes, cudaStream_t s) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    const cudaGraphNode_t* deps = nullptr;
    size_t n = 0;
#if CUDART_VERSION >= 13000
    COUPLEVAE_CUDA(cudaStreamGetCaptureInfo(s, &status, nullptr, nullptr, &deps, nullptr, &n));
#else
    COUPLEVAE_CUDA(cudaStreamGetCaptureInfo_v2(s, &status, nullptr, nullptr, &deps, &n));
#endif
    if (status != cudaStreamCaptureStatusActive || n != 1)
      throw GraphMismatch("a kernel launch did not become the one leaf of the captured graph", false);
    GraphOp op;
    op.kind = GraphOp::kernel;
    op.node = deps[0];
    op.func = func, op.grid = grid, op.block = block, op.smem = smem;
    op.bytes = std::move(bytes);
    ops_.push_back(std::move(op));
  }
  void add_fixed(std::string signature) {
    GraphOp op;
    op.kind = GraphOp::fixed;
    op.bytes = std::move(signature);
    ops_.push_back(std::move(op));
  }
  // The data goes to the landing area now; the graph copies it to dst from the device's copy.
  void capture_upload(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    const size_t at = (used_ + 255) & ~size_t(255);
    used_ = at + bytes;
    if (used_ > capacity_) {
      overflow_ = true;  // capture goes on; the key is captured again with a larger area
      return;
    }
    std::memcpy(host_ + at, src, bytes);
    COUPLEVAE_CUDA(cudaMemcpyAsync(dst, dev_ + at, bytes, cudaMemcpyDeviceToDevice, s));
    GraphOp op;
    op.kind = GraphOp::upload;
    op.dst = dst, op.size = bytes, op.offset = at;
    ops_.push_back(std::move(op));
  }
  // Ends a capture: the executable graph, or a GraphMismatch. The record owns g from here:
  // the kernel nodes patched in a replay are g's nodes, so g lives as long as the record.
  void instantiate(cudaGraph_t g) {
    graph_ = g;
    if (overflow_) throw GraphMismatch("the step uploads more than the landing area holds", true);
    COUPLEVAE_CUDA(cudaGraphInstantiate(&exec_, g, 0));
  }
  size_t used() const { return used_; }

  // --- replay ---
  void begin_replay() {
    COUPLEVAE_CUDA(cudaEventSynchronize(landed_));  // the last launch's transfer has read the area
    next_ = 0;
    used_ = 0;
  }
  void replay_kernel(const void* func, dim3 grid, dim3 block, unsigned smem, void** args, const std::string& bytes) {
    GraphOp& op = next(GraphOp::kernel);
    if (op.func != func || op.grid.x != grid.x || op.grid.y != grid.y || op.grid.z != grid.z || op.block.x != block.x ||
        op.block.y != block.y || op.block.z != block.z || op.smem != smem)
      throw GraphMismatch("a kernel differs in function or launch shape from the captured one", true);
    if (op.bytes == bytes) return;
    cudaKernelNodeParams p{};
    p.func = const_cast<void*>(func);
    p.gridDim = grid;
    p.blockDim = block;
    p.sharedMemBytes = smem;
    p.kernelParams = args;
    COUPLEVAE_CUDA(cudaGraphExecKernelNodeSetParams(exec_, op.node, &p));
    op.bytes = bytes;
    ++patched_;
  }
  void replay_fixed(const std::string& signature) {
    if (next(GraphOp::fixed).bytes != signature)
      throw GraphMismatch("a cuBLAS call, copy or memset differs from the captured one", true);
  }
  void replay_upload(void* dst, const void* src, size_t bytes) {
    const GraphOp& op = next(GraphOp::upload);
    if (op.dst != dst || op.size != bytes) throw GraphMismatch("an upload differs in destination or size", true);
    std::memcpy(host_ + op.offset, src, bytes);
    used_ = std::max(used_, op.offset + bytes);
  }
  void end_replay() {
    if (next_ != ops_.size()) throw GraphMismatch("the step issued fewer operations than the captured one", true);
  }

  // The landing area to the device, then the graph.
  void launch(cudaStream_t s) {
    if (used_) COUPLEVAE_CUDA(cudaMemcpyAsync(dev_, host_, used_, cudaMemcpyHostToDevice, s));
    COUPLEVAE_CUDA(cudaEventRecord(landed_, s));
    COUPLEVAE_CUDA(cudaGraphLaunch(exec_, s));
  }

  size_t patched() const { return patched_; }
  size_t operations() const { return ops_.size(); }

 private:
  GraphOp& next(GraphOp::Kind k) {
    if (next_ >= ops_.size() || ops_[next_].kind != k)
      throw GraphMismatch("the step issued another sequence of operations than the captured one", true);
    return ops_[next_++];
  }

  std::vector<GraphOp> ops_;
  size_t next_ = 0;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  char *host_ = nullptr, *dev_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  bool overflow_ = false;
  cudaEvent_t landed_ = nullptr;
  size_t patched_ = 0;
};

// --- The funnel (every launch, cuBLAS call, copy, memset and upload of the backend) ---

// A kernel's arguments converted to its parameters' types, and pointers to them: what
// cudaLaunchKernel (and a graph node's patch) reads, each through its pointer with the
// parameter's size. Converting first means a call site's int for a size_t parameter, or a
// float for a double, passes that value, not the bytes beside it.
template <class... P>
struct KernelArgs {
  std::tuple<P...> values;
  std::array<void*, sizeof...(P)> ptrs{};
  template <class... A>
  explicit KernelArgs(const A&... a) : values(static_cast<P>(a)...) {
    static_assert(sizeof...(A) == sizeof...(P), "couplevae: a kernel launch needs one argument per kernel parameter");
    std::apply([&](auto&... v) { ptrs = {static_cast<void*>(&v)...}; }, values);
  }
  KernelArgs(const KernelArgs&) = delete;
  KernelArgs& operator=(const KernelArgs&) = delete;
  std::string signature() const {
    return std::apply([](const auto&... v) { return serialize(v...); }, values);
  }
};

// kernel<<<grid, block, smem, stream>>>(args...); recorded in a capture, compared (and its
// node patched) in a replay.
template <class... P, class... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, unsigned smem, const char* name, const A&... args) {
  KernelArgs<P...> k(args...);
  const void* func = reinterpret_cast<const void*>(kernel);
  Runtime& rt = runtime();
  if (rt.graph_mode == GraphMode::replay)
    return rt.recording->replay_kernel(func, grid, block, smem, k.ptrs.data(), k.signature());
  check(cudaLaunchKernel(func, grid, block, k.ptrs.data(), smem, rt.stream), name, __FILE__, __LINE__);
  if (rt.graph_mode == GraphMode::capture) rt.recording->add_kernel(func, grid, block, smem, k.signature(), rt.stream);
}

// Work kept in a graph as captured (cuBLAS, copies, memsets, cooperative launches): run()
// issues it; in a replay only its signature (the values that determine it) is compared.
template <class Run, class... A>
void fixed_op(Run&& run, const A&... signature) {
  Runtime& rt = runtime();
  if (rt.graph_mode == GraphMode::replay) return rt.recording->replay_fixed(serialize(signature...));
  run();
  if (rt.graph_mode == GraphMode::capture) rt.recording->add_fixed(serialize(signature...));
}

inline void memset_async(void* p, size_t bytes) {
  if (bytes) fixed_op([&] { COUPLEVAE_CUDA(cudaMemsetAsync(p, 0, bytes, stream())); }, p, bytes);
}
inline void copy_async(void* dst, const void* src, size_t bytes) {
  if (bytes) fixed_op([&] { COUPLEVAE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream())); }, dst, src, bytes);
}

inline void copy2d_async(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) {
  if (width && rows)
    fixed_op([&] { COUPLEVAE_CUDA(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, stream())); },
             dst, dpitch, src, spitch, width, rows);
}

inline void Runtime::upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (graph_mode == GraphMode::capture) return recording->capture_upload(dst, src, bytes, stream);
  if (graph_mode == GraphMode::replay) return recording->replay_upload(dst, src, bytes);
  staging.upload(dst, src, bytes, stream);
}
inline void Runtime::outside_graphs(const char* what) const {
  if (graph_mode != GraphMode::eager) throw GraphMismatch(std::string(what) + " inside a captured step", true);
}

// --- The driver ---

// What the graphs of this thread did (bench/ prints it).
struct GraphStats {
  size_t eager = 0, captures = 0, replays = 0, patched = 0, fallbacks = 0;
  std::string last_fallback;
};

// Which graph a step uses: the objects whose memory it touches, and the batch's shape: its
// size, its bucket, its longest sentence (the CNN decoder's padded layout has the longest
// length's steps, core/batch.hpp; for the GRU models the bucket alone would do) and the rows
// of its vocabulary layer.
struct StepKey {
  const void *model, *optimiser;
  int batch, enc_steps, dec_steps, longest, outputs;
  auto tie() const { return std::tie(model, optimiser, batch, enc_steps, dec_steps, longest, outputs); }
  bool operator<(const StepKey& o) const { return tie() < o.tie(); }
};

class StepGraphs {
 public:
  template <class Step, class Rewind>
  void run(const StepKey& key, Step&& step, Rewind&& rewind) {
    Runtime& rt = runtime();
    if (generation_ != rt.alloc_generation) {  // every graph holds stale addresses now: free them
      for (auto& kv : entries_) kv.second.record.reset();
      generation_ = rt.alloc_generation;
    }
    Entry& e = entries_[key];
    if (e.stays_eager || !e.warm) {
      step();
      e.warm = true;
      ++stats.eager;
      return;
    }
    if (!e.record)
      capture(e, step, rewind);
    else
      replay(e, step, rewind);
  }
  void clear() {
    entries_.clear();
    landing_ = initial_landing;
  }
  GraphStats stats;

 private:
  struct Entry {
    std::unique_ptr<StepRecord> record;
    bool warm = false, stays_eager = false;
    size_t landing = 0, mismatches = 0;  // grows when a capture needs more
  };

  template <class Step, class Rewind>
  void fall_back(Entry& e, const GraphMismatch& m, Step& step, Rewind& rewind) {
    Runtime& rt = runtime();
    rt.graph_mode = GraphMode::eager;
    rt.recording = nullptr;
    e.record.reset();
    if (!m.retry || ++e.mismatches > 3) e.stays_eager = true;
    ++stats.fallbacks;
    stats.last_fallback = m.what();
    rewind();
    step();
    ++stats.eager;
  }

  template <class Step, class Rewind>
  void capture(Entry& e, Step& step, Rewind& rewind) {
    Runtime& rt = runtime();
    e.landing = std::max(e.landing, landing_);  // another key's need predicts this one's
    auto rec = std::make_unique<StepRecord>(e.landing);
    const size_t generation = rt.alloc_generation;
    COUPLEVAE_CUDA(cudaStreamBeginCapture(rt.stream, cudaStreamCaptureModeRelaxed));
    rt.graph_mode = GraphMode::capture;
    rt.recording = rec.get();
    cudaGraph_t g = nullptr;
    auto end_capture = [&] {
      rt.graph_mode = GraphMode::eager;
      rt.recording = nullptr;
      const cudaError_t err = cudaStreamEndCapture(rt.stream, &g);
      (void)cudaGetLastError();
      return err;
    };
    try {
      step();
    } catch (const GraphMismatch& m) {
      end_capture();
      if (g) cudaGraphDestroy(g);
      return fall_back(e, m, step, rewind);
    } catch (const std::exception& x) {
      // A call the capture refused, or an error of the step itself, which the eager run
      // then meets again and throws.
      end_capture();
      if (g) cudaGraphDestroy(g);
      return fall_back(e, GraphMismatch(std::string("the capture failed: ") + x.what(), false), step, rewind);
    }
    const cudaError_t err = end_capture();
    try {
      if (err != cudaSuccess || !g)
        throw GraphMismatch(std::string("the capture failed: ") + cudaGetErrorName(err), false);
      if (generation != rt.alloc_generation)
        throw GraphMismatch("device memory was allocated or freed during the capture", true);
      rec->instantiate(std::exchange(g, nullptr));
    } catch (const GraphMismatch& m) {
      if (g) cudaGraphDestroy(g);
      e.landing = std::max(e.landing, rec->used() + rec->used() / 2);
      landing_ = std::max(landing_, e.landing);
      return fall_back(e, m, step, rewind);
    } catch (const std::exception& x) {  // cudaGraphInstantiate refused the graph (rec owns it)
      return fall_back(e, GraphMismatch(std::string("the captured graph could not be instantiated: ") + x.what(), false),
                       step, rewind);
    }
    rec->launch(rt.stream);
    e.record = std::move(rec);
    ++stats.captures;
  }

  template <class Step, class Rewind>
  void replay(Entry& e, Step& step, Rewind& rewind) {
    Runtime& rt = runtime();
    StepRecord& r = *e.record;
    r.begin_replay();
    const size_t patched = r.patched(), generation = rt.alloc_generation;
    rt.graph_mode = GraphMode::replay;
    rt.recording = &r;
    try {
      step();
      r.end_replay();
      // an allocation throws in the step (Buffer); a free does not, and the graph may hold its address
      if (generation != rt.alloc_generation) throw GraphMismatch("device memory was freed during the step", true);
    } catch (const GraphMismatch& m) {
      return fall_back(e, m, step, rewind);
    } catch (const std::exception& x) {  // as in capture()
      return fall_back(e, GraphMismatch(std::string("the replay failed: ") + x.what(), false), step, rewind);
    }
    rt.graph_mode = GraphMode::eager;
    rt.recording = nullptr;
    r.launch(rt.stream);
    ++stats.replays;
    stats.patched += r.patched() - patched;
  }

  std::map<StepKey, Entry> entries_;
  size_t generation_ = 0;
  static constexpr size_t initial_landing = size_t(1) << 18;
  size_t landing_ = initial_landing;  // the largest landing area a capture has needed so far
};

// This host thread's step graphs.
inline StepGraphs& step_graphs() {
  thread_local StepGraphs g;
  return g;
}

}  // namespace couplevae::cuda_rt

namespace couplevae {

// Whole training steps on cuda: graphs per bucket when the runtime's step_graphs is on and
// the batch is bucketed, otherwise eager (backend/launch.hpp has the generic contract).
template <>
struct step_runner<cuda> {
  // The bucket a trainer should make its batches with (0: packed batches).
  static int bucket() {
    const cuda_rt::Runtime& rt = cuda_rt::runtime();
    return rt.step_graphs ? rt.graph_bucket : 0;
  }
  template <class Step, class Rewind>
  static void run(const void* model, const void* optimiser, const Batch& b, Step&& step, Rewind&& rewind) {
    if (!cuda_rt::runtime().step_graphs || b.bucket() == 0) return step();
    cuda_rt::step_graphs().run(
        cuda_rt::StepKey{model, optimiser, b.size(), b.enc.steps, b.dec.steps, b.lengths.front(), b.outputs.count()},
        step, rewind);
  }
};

}  // namespace couplevae
