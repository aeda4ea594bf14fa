// couplevae/core/arena.hpp: one contiguous parameter arena per model, and its visitor.
//
// Modules register their parameters at construction (name, shape, initialiser) and keep
// the returned Param handle. finalize() lays every tensor out contiguously (64-byte
// aligned offsets) in one value buffer and one gradient buffer of the same layout, then
// initialise(seed) fills the values: each tensor from its own Philox stream derived from
// (seed, tensor index), so initial values do not depend on thread count or backend.
//
// visit(f) calls f(const ParamInfo&, T* value, T* grad) for every tensor in registration
// order: Adam, clipping, checkpoints and parity tests are all written against it.
// Gradients follow the accumulate rule: backward adds, zero_grad() clears.
#pragma once
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "error.hpp"
#include "rng.hpp"

namespace couplevae {

// How a tensor starts: U(-a, a), N(0, a^2), or the constant a.
struct Init {
  enum Kind { uniform, normal, constant } kind = constant;
  double a = 0;
  static Init uniform_pm(double a) { return {uniform, a}; }
  static Init normal_std(double s) { return {normal, s}; }
  static Init constant_value(double c) { return {constant, c}; }
  // PyTorch's default for Linear and GRU: U(+-1/sqrt(fan_in)).
  static Init fan_in(int fan) { return {uniform, 1.0 / std::sqrt(double(fan))}; }
};

struct ParamInfo {
  std::string name;
  std::vector<int> shape;  // row-major; 1-D for biases
  size_t offset = 0;       // in elements
  size_t size = 0;
  Init init;
  bool trainable = true;  // false for running statistics (BatchNorm)
};

struct Param {
  int index = -1;
  bool valid() const { return index >= 0; }
};

template <class T, class B = cpu>
class Arena {
 public:
  Param add(std::string name, std::vector<int> shape, Init init, bool trainable = true) {
    require(!finalized_, "couplevae: parameter '" + name + "' registered after finalize()");
    for (const auto& p : infos_)
      require(p.name != name, "couplevae: parameter '" + name + "' registered twice");
    size_t n = 1;
    for (int d : shape) {
      require(d > 0, "couplevae: parameter '" + name + "' has a non-positive dimension");
      n *= size_t(d);
    }
    ParamInfo info{std::move(name), std::move(shape), 0, n, init, trainable};
    infos_.push_back(std::move(info));
    return Param{int(infos_.size()) - 1};
  }

  void finalize() {
    size_t off = 0;
    for (auto& p : infos_) {
      p.offset = off;
      off += (p.size + 15) / 16 * 16;
    }
    total_ = off;
    values_.resize(total_);
    grads_.resize(total_);
    values_.fill_zero();
    grads_.fill_zero();
    finalized_ = true;
  }

  void initialise(uint64_t seed) {
    Rng base(seed);
    std::vector<T> host(total_, T(0));
    for (size_t i = 0; i < infos_.size(); ++i) {
      const auto& p = infos_[i];
      Rng r = base.derive(i);
      T* dst = host.data() + p.offset;
      switch (p.init.kind) {
        case Init::uniform:
          r.uniform(dst, p.size);
          for (size_t k = 0; k < p.size; ++k) dst[k] = T(p.init.a * (2.0 * double(dst[k]) - 1.0));
          break;
        case Init::normal:
          r.normal(dst, p.size);
          for (size_t k = 0; k < p.size; ++k) dst[k] = T(p.init.a * double(dst[k]));
          break;
        case Init::constant:
          for (size_t k = 0; k < p.size; ++k) dst[k] = T(p.init.a);
          break;
      }
    }
    values_.from_host(host.data(), host.size());
    grads_.fill_zero();
  }

  T* value(Param p) { return values_.data() + infos_[p.index].offset; }
  const T* value(Param p) const { return values_.data() + infos_[p.index].offset; }
  T* grad(Param p) { return grads_.data() + infos_[p.index].offset; }
  const ParamInfo& info(Param p) const { return infos_[p.index]; }

  void zero_grad() { grads_.fill_zero(); }

  template <class F>
  void visit(F&& f) {
    for (auto& p : infos_) f(static_cast<const ParamInfo&>(p), values_.data() + p.offset, grads_.data() + p.offset);
  }
  template <class F>
  void visit(F&& f) const {
    for (const auto& p : infos_) f(p, values_.data() + p.offset, grads_.data() + p.offset);
  }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  size_t total() const { return total_; }  // padded element count
  size_t count() const {                   // number of parameters
    size_t n = 0;
    for (const auto& p : infos_) n += p.size;
    return n;
  }
  Buffer<T, B>& values() { return values_; }
  Buffer<T, B>& grads() { return grads_; }
  const Buffer<T, B>& values() const { return values_; }
  const Buffer<T, B>& grads() const { return grads_; }

 private:
  std::vector<ParamInfo> infos_;
  Buffer<T, B> values_, grads_;
  size_t total_ = 0;
  bool finalized_ = false;
};

}  // namespace couplevae
