#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (issue: reliability).
#
#   bash scripts/sanitize.sh [BUILD_DIR]        (default build-asan)
#
# Builds the tests and the command-line tool with COUPLEVAE_SANITIZE=ON (RelWithDebInfo:
# -O2 -g) and runs every ctest test except those that build other projects with their own
# flags (consumer builds, compile-fail checks, the clang fuzz build). Any sanitizer report
# fails the test that triggered it (halt_on_error, UBSan without recovery). About an hour on
# 2 cores; CI runs the plain suite (bash .ci/run) and this command is run before releases.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOUPLEVAE_SANITIZE=ON -DCOUPLEVAE_BUILD_BENCH=OFF
cmake --build "$build" -j2
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd "$build" && ctest --output-on-failure -j2 -E '^(consumer|compile_fail|fuzz_smoke)'
