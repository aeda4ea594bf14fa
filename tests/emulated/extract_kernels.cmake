# extract_kernels.cmake: cmake -DIN=recurrence.cuh -DOUT=kernels.inc -P extract_kernels.cmake
#
# Takes the device code of backend/cuda/recurrence.cuh (from `constexpr int rec_rows` up to
# the first host launcher: the kernels of one step forward and backward, rows_gemm_kernel
# and the persistent kernels) and makes it ordinary C++ for emulate_recurrence.cpp: kernels
# become functions, the block's __shared__ tile a reference to the emulated block's shared
# memory, the barrier's volatile spin an atomic load. Every replacement must match: a kernel whose text changed so that one
# no longer does stops the build here, naming it.
file(READ "${IN}" text)
string(FIND "${text}" "constexpr int rec_rows" begin)
string(FIND "${text}" "// Launches gru_pass_kernel" end)
if(begin LESS 0 OR end LESS 0)
  message(FATAL_ERROR "extract_kernels.cmake: the markers of the device code are not in ${IN}")
endif()
math(EXPR len "${end} - ${begin}")
string(SUBSTRING "${text}" ${begin} ${len} code)

function(replace what with)
  string(FIND "${code}" "${what}" at)
  if(at LESS 0)
    message(FATAL_ERROR "extract_kernels.cmake: '${what}' is no longer in ${IN}: update the emulation")
  endif()
  string(REPLACE "${what}" "${with}" code "${code}")
  set(code "${code}" PARENT_SCOPE)
endfunction()

replace("__shared__ RowsShared<T, rec_units> sh;" "auto& sh = emulated_shared<RowsShared<T, rec_units>>();")
replace("__shared__ StepShared<Step> sh;" "auto& sh = emulated_shared<StepShared<Step>>();")
replace("__global__ void __launch_bounds__(rec_threads)" "void")
replace("__device__ inline" "inline")
replace("__device__ void" "void")
replace("*static_cast<volatile unsigned*>(counter) < target" "emulated_load(counter) < target")
string(FIND "${code}" "<<<" launch)
if(NOT launch LESS 0)
  message(FATAL_ERROR "extract_kernels.cmake: a <<<>>> launch is left in the extracted code")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by extract_kernels.cmake: do not edit.\n${code}")
file(RENAME "${OUT}.tmp" "${OUT}")
