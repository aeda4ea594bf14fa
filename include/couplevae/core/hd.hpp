// couplevae/core/hd.hpp: COUPLEVAE_HD marks a function that runs on the host and, when the
// translation unit is compiled by nvcc, on the device too (the Philox generator, the
// per-element formulas of the cuda kernels). Under a host compiler it expands to nothing.
#pragma once

#if defined(__CUDACC__)
#define COUPLEVAE_HD __host__ __device__
#else
#define COUPLEVAE_HD
#endif
