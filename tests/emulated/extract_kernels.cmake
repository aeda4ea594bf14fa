# extract_kernels.cmake: cmake -DKIND=recurrence|softmax|batchnorm -DOUT=kernels.inc -P extract_kernels.cmake
#   recurrence: -DIN=backend/cuda/recurrence.cuh
#   softmax:    -DIN=backend/cuda/ops.cuh -DREDUCE=backend/cuda/launch.cuh
#   batchnorm:  -DIN=backend/cuda/batch_norm.cuh -DREDUCE=backend/cuda/launch.cuh
#
# Takes device code out of the CUDA headers and makes it ordinary C++ for the emulation
# programs (emulation.hpp runs it on host threads):
#   recurrence: from `constexpr int rec_rows` up to the first host launcher of recurrence.cuh
#               (the kernels of one step forward and backward, rows_gemm_kernel and the
#               persistent kernel), for emulate_recurrence.cpp;
#   softmax:    block_reduce, strided_loads and reduce_kernel (with its grid's size) of
#               launch.cuh and softmax_xent_kernel of ops.cuh (from its comment to the end
#               of namespace cuda_rt), for emulate_softmax.cpp;
#   batchnorm:  strided_loads of launch.cuh and batch_norm.cuh from `constexpr int bn_cols`
#               to the end of its namespace (the grid's size, the column sum and both
#               kernels), for emulate_batchnorm.cpp.
# Kernels become functions (their parameters without __grid_constant__), their __shared__
# declarations references to the emulated block's shared memory, the barrier's volatile
# spin an atomic load. Every replacement must match: a kernel whose text changed so that
# one no longer does stops the build here, naming it.

# The text of `file` from `first` (included) to `last` (excluded, its first occurrence after
# `first`), into `var`.
function(extract var file first last)
  file(READ "${file}" text)
  string(FIND "${text}" "${first}" begin)
  if(begin LESS 0)
    message(FATAL_ERROR "extract_kernels.cmake: '${first}' is no longer in ${file}")
  endif()
  string(SUBSTRING "${text}" ${begin} -1 text)
  string(FIND "${text}" "${last}" end)
  if(end LESS 0)
    message(FATAL_ERROR "extract_kernels.cmake: '${last}' does not follow '${first}' in ${file}")
  endif()
  string(SUBSTRING "${text}" 0 ${end} text)
  set(${var} "${text}" PARENT_SCOPE)
endfunction()

function(replace what with)
  string(FIND "${code}" "${what}" at)
  if(at LESS 0)
    message(FATAL_ERROR "extract_kernels.cmake: '${what}' is no longer in the ${KIND} code: update the emulation")
  endif()
  string(REPLACE "${what}" "${with}" code "${code}")
  set(code "${code}" PARENT_SCOPE)
endfunction()

if(KIND STREQUAL "recurrence")
  extract(code "${IN}" "constexpr int rec_rows" "// Launches gru_pass_kernel")
  replace("__shared__ RowsShared<T, rec_units> sh;" "auto& sh = emulated_shared<RowsShared<T, rec_units>>();")
  replace("__shared__ StepShared<Step> sh;" "auto& sh = emulated_shared<StepShared<Step>>();")
  replace("__global__ void __launch_bounds__(rec_threads, 2)" "void")
  replace("__grid_constant__ " "")
  replace("__device__ inline" "inline")
  replace("__device__ void" "void")
  replace("*static_cast<volatile unsigned*>(counter) < target" "emulated_load(counter) < target")
  set(sources "${IN}")
elseif(KIND STREQUAL "softmax")
  extract(reduce "${REDUCE}" "// Sum over a block of 256 threads" "// out[0] += scale * (sum of f(i) for i < n), on")
  extract(kernel "${IN}" "// One block per row, whose values" "}  // namespace cuda_rt")
  set(code "${reduce}${kernel}")
  replace("__device__ U block_reduce" "U block_reduce")
  replace("__device__ void strided_loads" "void strided_loads")
  replace("__global__ void reduce_kernel" "void reduce_kernel")
  replace("__shared__ double shared[32];" "auto& shared = emulated_shared<double[32]>();")
  replace("__global__ void softmax_xent_kernel" "void softmax_xent_kernel")
  replace("__shared__ T shared[32];" "auto& shared = emulated_shared<T[32]>();")
  replace("extern __shared__ __align__(16) unsigned char cache_bytes[];"
          "unsigned char* cache_bytes = emulated_dynamic_shared();")
  set(sources "${REDUCE} and ${IN}")
elseif(KIND STREQUAL "batchnorm")
  extract(loads "${REDUCE}" "// use(i, load(i)) for i" "// out[0] += scale")
  extract(kernels "${IN}" "constexpr int bn_cols" "}  // namespace couplevae::cuda_rt")
  set(code "${loads}${kernels}")
  replace("__device__ void strided_loads" "void strided_loads")
  replace("__device__ double bn_column_sum" "double bn_column_sum")
  replace("__device__ inline BnColumn" "inline BnColumn")
  replace("__global__ void __launch_bounds__(bn_threads)" "void")
  replace("__shared__ double shared[bn_threads];" "auto& shared = emulated_shared<double[bn_threads]>();")
  set(sources "${REDUCE} and ${IN}")
else()
  message(FATAL_ERROR "extract_kernels.cmake: KIND is recurrence, softmax or batchnorm, not '${KIND}'")
endif()
foreach(device "<<<" "__global__" "__shared__" "__device__")
  string(FIND "${code}" "${device}" at)
  if(NOT at LESS 0)
    message(FATAL_ERROR "extract_kernels.cmake: '${device}' is left in the extracted ${KIND} code")
  endif()
endforeach()
file(WRITE "${OUT}.tmp" "// Generated from ${sources} by extract_kernels.cmake: do not edit.\n${code}")
file(RENAME "${OUT}.tmp" "${OUT}")
