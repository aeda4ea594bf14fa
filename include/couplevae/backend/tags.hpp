// couplevae/backend/tags.hpp: backend tags.
//
// A backend is an empty tag type. Every model, module and buffer is templated on one;
// `ops<B>` (backend/<name>/ops.hpp) holds its kernels and `Context<B>` its runtime state.
//   cpu  : Eigen on the host (the default everywhere).
//   cuda : NVIDIA GPUs (backend/cuda/), built only with COUPLEVAE_WITH_CUDA.
#pragma once
#include <type_traits>

namespace couplevae {

struct cpu {
  static constexpr const char* name = "cpu";
};
struct cuda {
  static constexpr const char* name = "cuda";
};

template <class B>
inline constexpr bool is_backend_v = std::is_same_v<B, cpu> || std::is_same_v<B, cuda>;

// The primary template is never used: including the backend's ops header provides the
// specialisation.
template <class B>
struct ops {
  static_assert(is_backend_v<B>,
                "couplevae: ops<B> needs a backend tag: couplevae::cpu or couplevae::cuda");
  static_assert(!std::is_same_v<B, cuda>,
                "couplevae: ops<cuda> is not visible: include <couplevae/cuda.cuh> and compile this "
                "translation unit with nvcc, linked to couplevae::cuda (COUPLEVAE_WITH_CUDA=ON)");
};

}  // namespace couplevae
