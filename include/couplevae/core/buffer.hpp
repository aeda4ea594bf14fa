// couplevae/core/buffer.hpp: owning, backend-typed storage and a 2-D view.
//
// Buffer<T, B> owns n elements in the backend's memory (host for cpu). Every activation
// in the library is a 2-D row-major matrix (rows, cols): packed token rows (N, H), batch
// rows (B, H), gate blocks (N, 3H). View<T> is a non-owning (data, rows, cols) triple; it
// is what modules pass between each other.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "eigen.hpp"

#include "../backend/tags.hpp"

namespace couplevae {

template <class T>
struct View {
  T* data = nullptr;
  int rows = 0;
  int cols = 0;
  size_t size() const { return size_t(rows) * size_t(cols); }
  T* row(int r) const { return data + size_t(r) * size_t(cols); }
  // Rows [begin, begin + count).
  View block(int begin, int count) const { return {row(begin), count, cols}; }
  explicit operator bool() const { return data != nullptr; }
};

// The primary template is never used: cpu's specialisation is below, cuda's in
// backend/cuda/buffer.cuh.
template <class T, class B = cpu>
class Buffer {
  static_assert(is_backend_v<B>, "couplevae: Buffer<T, B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: Buffer<T, cuda> is not visible: include <couplevae/cuda.cuh> and compile this "
                "translation unit with nvcc, linked to couplevae::cuda (COUPLEVAE_WITH_CUDA=ON)");
};

template <class T>
class Buffer<T, cpu> {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }
  void resize(size_t n) { data_.resize(n); }
  // Shapes the buffer as (rows, cols), growing it when needed (contents unspecified).
  View<T> shape(int rows, int cols) {
    const size_t n = size_t(rows) * size_t(cols);
    if (data_.size() < n) data_.resize(n);
    return {data_.data(), rows, cols};
  }
  // Shapes and zero-fills.
  View<T> zeros(int rows, int cols) {
    View<T> v = shape(rows, cols);
    if (v.size()) std::memset(v.data, 0, v.size() * sizeof(T));
    return v;
  }
  void fill_zero() {
    if (!data_.empty()) std::memset(data_.data(), 0, data_.size() * sizeof(T));
  }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  size_t size() const { return data_.size(); }
  std::vector<T> to_host() const { return {data_.begin(), data_.end()}; }
  void from_host(const T* src, size_t n) {
    resize(n);
    if (n) std::memcpy(data_.data(), src, n * sizeof(T));
  }

 private:
  std::vector<T, Eigen::aligned_allocator<T>> data_;
};

// Index arrays (token ids, row maps) are built on the host. backend_ids() hands B's kernels
// a pointer to them: the host data itself on cpu; on cuda a copy uploaded into `stage` now
// (the pointer stays valid until `stage` is reused).
template <class I, class B>
const I* backend_ids(const std::vector<I>& ids, Buffer<I, B>& stage) {
  if constexpr (std::is_same_v<B, cpu>) {
    return ids.data();
  } else {
    stage.from_host(ids.data(), ids.size());
    return stage.data();
  }
}

}  // namespace couplevae
