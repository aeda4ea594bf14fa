// couplevae/backend/cuda/buffer.cuh: Buffer<T, cuda>, owning storage in device memory.
//
// The same interface as Buffer<T, cpu> (core/buffer.hpp): shape() grows without clearing,
// zeros() and fill_zero() clear on the thread's stream, to_host() / from_host() copy and
// order themselves after the queued kernels (to_host waits for them; from_host does not). Copies are deep
// (device to device); moves hand the allocation over.
#pragma once
#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "../../core/buffer.hpp"
#include "runtime.cuh"

namespace couplevae {

template <class T>
class Buffer<T, cuda> {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }
  Buffer(const Buffer& o) {
    resize(o.size_);
    cuda_rt::copy_async(data_, o.data_, size_ * sizeof(T));
  }
  Buffer& operator=(const Buffer& o) {
    if (this != &o) {
      Buffer tmp(o);
      swap(tmp);
    }
    return *this;
  }
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  ~Buffer() {
    if (!data_) return;
    cudaFree(data_);
    ++cuda_rt::runtime().alloc_generation;
  }
  void swap(Buffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  // Grows (keeping the contents) or shrinks the logical size. Growth reserves 1.5x, so a
  // buffer sized per batch settles after a few batches (cudaFree waits for the device).
  // Not inside a captured step (backend/cuda/graph.cuh): a graph holds the old address.
  void resize(size_t n) {
    if (n > capacity_) {
      cuda_rt::Runtime& rt = cuda_rt::runtime();
      rt.outside_graphs("allocating device memory");
      ++rt.alloc_generation;
      const size_t cap = capacity_ ? std::max(n, capacity_ + capacity_ / 2) : n;
      T* p = nullptr;
      COUPLEVAE_CUDA(cudaMalloc(&p, cap * sizeof(T)));
      if (size_) COUPLEVAE_CUDA(cudaMemcpyAsync(p, data_, size_ * sizeof(T), cudaMemcpyDeviceToDevice, rt.stream));
      if (data_) {
        rt.sync();  // the old block may still be read by queued work
        COUPLEVAE_CUDA(cudaFree(data_));
      }
      data_ = p;
      capacity_ = cap;
    }
    size_ = n;
  }
  View<T> shape(int rows, int cols) {
    const size_t n = size_t(rows) * size_t(cols);
    if (size_ < n) resize(n);
    return {data_, rows, cols};
  }
  View<T> zeros(int rows, int cols) {
    View<T> v = shape(rows, cols);
    cuda_rt::memset_async(v.data, v.size() * sizeof(T));
    return v;
  }
  void fill_zero() { cuda_rt::memset_async(data_, size_ * sizeof(T)); }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  std::vector<T> to_host() const {
    std::vector<T> h(size_);
    if (size_) {
      cuda_rt::runtime().outside_graphs("reading device memory back");
      COUPLEVAE_CUDA(cudaMemcpyAsync(h.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost, cuda_rt::stream()));
      cuda_rt::runtime().sync();
    }
    return h;
  }
  // Through the runtime's pinned staging: queued, not waited for; the source may be reused
  // as soon as this returns.
  void from_host(const T* src, size_t n) {
    resize(n);
    cuda_rt::runtime().upload(data_, src, n * sizeof(T));
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

}  // namespace couplevae
