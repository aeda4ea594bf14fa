// couplevae/cuda.cuh: the cuda backend, for translation units compiled by nvcc.
//
//   #include <couplevae/couplevae.hpp>
//   #include <couplevae/cuda.cuh>
//   couplevae::Coupled<couplevae::Model<..., couplevae::cuda>> model(cfg, seed);
//
// Link the couplevae::cuda CMake target (cudart, cuBLAS; nvcc --extended-lambda). The
// models whose posterior or regularizer needs flow_ops, vmf_ops, mmd_ops or conv_ops do not
// have cuda kernels yet and stop at compile time with a message naming the missing family.
#pragma once
#include "backend/cuda/buffer.cuh"
#include "backend/cuda/decode_ops.cuh"
#include "backend/cuda/ops.cuh"
#include "backend/cuda/runtime.cuh"
