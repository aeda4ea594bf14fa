// couplevae/cuda.cuh: the cuda backend, for translation units compiled by nvcc.
//
//   #include <couplevae/couplevae.hpp>
//   #include <couplevae/cuda.cuh>
//   using CVAE = couplevae::with_backend_t<couplevae::Coupled<couplevae::models::VAE>, couplevae::cuda>;
//   CVAE model(cfg, seed);                      // parameters in device memory
//   couplevae::Context<couplevae::cuda> ctx(seed);
//
// Link the couplevae::cuda CMake target (cudart, cuBLAS; nvcc -std=c++20 --extended-lambda
// --expt-relaxed-constexpr). Every model runs on it: ops<cuda> (cuBLAS GEMMs and kernels),
// launch<cuda> for the shared row bodies of the posterior, regularizer and decoder
// families, decode_ops<cuda> for generation. Work is queued on one stream per host thread
// (backend/cuda/runtime.cuh); reading a loss back waits for it. train_step can run whole
// steps as CUDA Graphs on bucketed batches (backend/cuda/graph.cuh, COUPLEVAE_CUDA_GRAPHS=1).
#pragma once
#include "backend/cuda/buffer.cuh"
#include "backend/cuda/decode_ops.cuh"
#include "backend/cuda/graph.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.cuh"
#include "backend/cuda/runtime.cuh"
