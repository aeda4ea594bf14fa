# run_consumer.cmake: configure, build and run the consumer project (tests/consumer) one way.
#
#   cmake -DMODE=<mode> -DSOURCE_DIR=<couplevae source> -DWORK_DIR=<scratch dir>
#         [-DPREFIX=<install prefix>] [-DVERSION=<major.minor>] [-DGENERATOR=<generator>]
#         [-DCXX_COMPILER=<c++>] [-DMAKE_PROGRAM=<make>] -P run_consumer.cmake
#
# MODE
#   install           configure a fresh, minimal build of SOURCE_DIR (no tests/examples/bench)
#                     in WORK_DIR/lib-build and install it into PREFIX
#   find_package      the consumer finds the package in PREFIX: find_package(couplevae VERSION)
#   version_mismatch  find_package with an incompatible version (next minor, next major) must
#                     fail to configure
#   add_subdirectory  the consumer adds SOURCE_DIR with add_subdirectory()
#   fetchcontent      the consumer takes SOURCE_DIR through FetchContent (SOURCE_DIR, no download)
#   cuda_missing      find_package(couplevae COMPONENTS cuda) in PREFIX (installed without the
#                     cuda backend) must fail, saying how to get it
#   cuda              install a build of SOURCE_DIR with COUPLEVAE_WITH_CUDA=ON into
#                     WORK_DIR/prefix, then build and run tests/consumer/cuda against it
#                     (needs nvcc: -DCUDA_COMPILER=...; the program itself skips without a GPU)
#
# Every step that fails stops the script with FATAL_ERROR and the command's whole output.
cmake_minimum_required(VERSION 3.20)

foreach(var MODE SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
get_filename_component(WORK_DIR "${WORK_DIR}" ABSOLUTE)
set(CONSUMER_DIR "${CMAKE_CURRENT_LIST_DIR}")
if(NOT VERSION)
  set(VERSION 0.1)
endif()

# Options every configure shares: same generator and compiler as the main build.
set(common_args)
if(GENERATOR)
  list(APPEND common_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(CUDA_COMPILER)
  list(APPEND common_args "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}")
endif()
if(MAKE_PROGRAM)
  list(APPEND common_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
# Keep the consumer build lean: one translation unit at -O1, no build-type flags. It is a
# plain user's build (no -fopenmp, no -march=native) with every warning an error: the headers
# must compile cleanly there (unknown OpenMP pragmas, vector types wider than the target's).
set(consumer_args ${common_args} -DCMAKE_BUILD_TYPE= "-DCMAKE_CXX_FLAGS=-O1 -Wall -Wextra -Werror"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DCOUPLEVAE_SOURCE_DIR=${SOURCE_DIR}")

# run_step(<name> <command...>): runs the command, output into step_output; fails loudly.
function(run_step name)
  message(STATUS "[${MODE}] ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(step_output "${out}" PARENT_SCOPE)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message("---- output of: ${cmd} ----\n${out}---- end of output ----")
    message(FATAL_ERROR "[${MODE}] ${name} failed (exit ${rc}), its output is above")
  endif()
endfunction()

# configure_build_run(<dir> <extra configure args...>): the consumer, end to end.
function(configure_build_run dir)
  file(REMOVE_RECURSE "${dir}")
  run_step("configure consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${dir}" ${consumer_args} ${ARGN})
  run_step("build consumer" "${CMAKE_COMMAND}" --build "${dir}")
  run_step("run consumer" "${dir}/couplevae_consumer")
  foreach(part "loss " "rec " "kl " "rec_c " "couple " "ok: ")
    string(FIND "${step_output}" "${part}" at)
    if(at EQUAL -1)
      message("---- consumer output ----\n${step_output}---- end of output ----")
      message(FATAL_ERROR "[${MODE}] the consumer's output (above) lacks '${part}'")
    endif()
  endforeach()
  message(STATUS "[${MODE}] consumer output:\n${step_output}")
endfunction()

function(require_prefix)
  if(NOT PREFIX)
    message(FATAL_ERROR "run_consumer.cmake: MODE=${MODE} needs -DPREFIX=<install prefix>")
  endif()
  file(GLOB_RECURSE config_files "${PREFIX}/*/couplevaeConfigVersion.cmake")
  if(NOT config_files)
    message(FATAL_ERROR "[${MODE}] no couplevaeConfigVersion.cmake under ${PREFIX}: run MODE=install first")
  endif()
endfunction()

if(MODE STREQUAL "install")
  if(NOT PREFIX)
    message(FATAL_ERROR "run_consumer.cmake: MODE=install needs -DPREFIX=<install prefix>")
  endif()
  set(lib_build "${WORK_DIR}/lib-build")
  file(REMOVE_RECURSE "${lib_build}" "${PREFIX}")
  run_step("configure couplevae (minimal)" "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${lib_build}"
           ${common_args} -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_BUILD_TESTS=OFF
           -DCOUPLEVAE_BUILD_EXAMPLES=OFF -DCOUPLEVAE_BUILD_BENCH=OFF "-DCMAKE_INSTALL_PREFIX=${PREFIX}")
  run_step("build couplevae" "${CMAKE_COMMAND}" --build "${lib_build}")
  run_step("install couplevae" "${CMAKE_COMMAND}" --install "${lib_build}" --prefix "${PREFIX}")
  foreach(f include/couplevae/couplevae.hpp)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "[install] ${PREFIX}/${f} was not installed")
    endif()
  endforeach()
  foreach(f couplevaeConfig.cmake couplevaeConfigVersion.cmake couplevaeTargets.cmake)
    file(GLOB_RECURSE found "${PREFIX}/*/cmake/couplevae/${f}")
    if(NOT found)
      message(FATAL_ERROR "[install] no cmake/couplevae/${f} under ${PREFIX}")
    endif()
  endforeach()
  message(STATUS "[install] couplevae installed into ${PREFIX}")

elseif(MODE STREQUAL "find_package")
  require_prefix()
  configure_build_run("${WORK_DIR}/build" "-DCMAKE_PREFIX_PATH=${PREFIX}"
                      -DCOUPLEVAE_CONSUMER_MODE=find_package "-DCOUPLEVAE_REQUIRED_VERSION=${VERSION}")
  # The package must come from PREFIX, not from a copy installed elsewhere on the machine.
  file(STRINGS "${WORK_DIR}/build/CMakeCache.txt" dir_line REGEX "^couplevae_DIR:")
  string(REGEX REPLACE "^couplevae_DIR:[A-Z]+=" "" found_dir "${dir_line}")
  file(REAL_PATH "${PREFIX}" real_prefix)
  file(REAL_PATH "${found_dir}" real_found)
  string(FIND "${real_found}" "${real_prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "[find_package] couplevae was found in '${found_dir}', not under ${PREFIX}")
  endif()
  message(STATUS "[find_package] find_package(couplevae ${VERSION} REQUIRED) found ${found_dir}")

elseif(MODE STREQUAL "version_mismatch")
  require_prefix()
  string(REPLACE "." ";" parts "${VERSION}")
  list(GET parts 0 major)
  list(GET parts 1 minor)
  math(EXPR next_minor "${minor} + 1")
  math(EXPR next_major "${major} + 1")
  # The version file promises SameMinorVersion: another minor or major must be refused.
  foreach(bad "${major}.${next_minor}" "${next_major}.0")
    set(dir "${WORK_DIR}/build-${bad}")
    file(REMOVE_RECURSE "${dir}")
    message(STATUS "[version_mismatch] find_package(couplevae ${bad} REQUIRED) must fail")
    execute_process(COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${dir}" ${consumer_args}
                            "-DCMAKE_PREFIX_PATH=${PREFIX}" -DCOUPLEVAE_CONSUMER_MODE=find_package
                            "-DCOUPLEVAE_REQUIRED_VERSION=${bad}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    string(FIND "${out}" "compatible with requested version" at)
    if(rc EQUAL 0 OR at EQUAL -1)
      message("---- configure output ----\n${out}---- end of output ----")
      message(FATAL_ERROR "[version_mismatch] find_package(couplevae ${bad} REQUIRED) did not fail on "
                          "the version (exit ${rc}), the output is above")
    endif()
    file(REMOVE_RECURSE "${dir}")
  endforeach()
  message(STATUS "[version_mismatch] versions ${major}.${next_minor} and ${next_major}.0 refused")

elseif(MODE STREQUAL "cuda_missing")
  require_prefix()
  set(dir "${WORK_DIR}/build")
  file(REMOVE_RECURSE "${dir}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${dir}" ${consumer_args}
                          "-DCMAKE_PREFIX_PATH=${PREFIX}" -DCOUPLEVAE_CONSUMER_MODE=find_package
                          "-DCOUPLEVAE_REQUIRED_VERSION=${VERSION}" -DCOUPLEVAE_COMPONENTS=cuda
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  string(FIND "${out}" "installed without its cuda component" at)
  if(rc EQUAL 0 OR at EQUAL -1)
    message("---- configure output ----\n${out}---- end of output ----")
    message(FATAL_ERROR "[cuda_missing] find_package(couplevae COMPONENTS cuda) did not fail with the "
                        "missing-component message (exit ${rc}), the output is above")
  endif()
  message(STATUS "[cuda_missing] refused: installed without its cuda component")

elseif(MODE STREQUAL "cuda")
  set(lib_build "${WORK_DIR}/lib-build")
  set(cuda_prefix "${WORK_DIR}/prefix")
  file(REMOVE_RECURSE "${lib_build}" "${cuda_prefix}")
  run_step("configure couplevae with cuda (minimal)" "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${lib_build}"
           ${common_args} -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_BUILD_TESTS=OFF -DCOUPLEVAE_BUILD_EXAMPLES=OFF
           -DCOUPLEVAE_BUILD_BENCH=OFF -DCOUPLEVAE_WITH_CUDA=ON "-DCMAKE_INSTALL_PREFIX=${cuda_prefix}")
  run_step("install couplevae with cuda" "${CMAKE_COMMAND}" --install "${lib_build}" --prefix "${cuda_prefix}")
  file(GLOB_RECURSE found "${cuda_prefix}/*/cmake/couplevae/couplevaeCudaTargets.cmake")
  if(NOT found)
    message(FATAL_ERROR "[cuda] no cmake/couplevae/couplevaeCudaTargets.cmake under ${cuda_prefix}")
  endif()
  set(dir "${WORK_DIR}/build")
  file(REMOVE_RECURSE "${dir}")
  run_step("configure cuda consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}/cuda" -B "${dir}" ${common_args}
           -DCMAKE_BUILD_TYPE=Release -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DCMAKE_PREFIX_PATH=${cuda_prefix}")
  run_step("build cuda consumer" "${CMAKE_COMMAND}" --build "${dir}")
  run_step("run cuda consumer" "${dir}/couplevae_consumer_cuda")
  if(NOT step_output MATCHES "(no CUDA device: built against couplevae::cuda|ok: loss)")
    message(FATAL_ERROR "[cuda] unexpected output of the cuda consumer:\n${step_output}")
  endif()
  message(STATUS "[cuda] consumer output:\n${step_output}")

elseif(MODE STREQUAL "add_subdirectory" OR MODE STREQUAL "fetchcontent")
  configure_build_run("${WORK_DIR}/build" "-DCOUPLEVAE_CONSUMER_MODE=${MODE}")

else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}' (expected install, find_package, "
                      "version_mismatch, add_subdirectory or fetchcontent)")
endif()
