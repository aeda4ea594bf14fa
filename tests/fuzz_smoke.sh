#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan) and runs each for a bounded
# time from generated seeds. Fails on any crash, sanitizer report, leak, timeout or
# out-of-memory; exits 77 (ctest: skipped) when clang or its libFuzzer runtime is missing.
# Usage: fuzz_smoke.sh SOURCE_DIR WORK_DIR SECONDS_PER_TARGET
set -u
src=$1
work=$2
seconds=$3
cxx=${COUPLEVAE_FUZZ_CXX:-clang++}
mkdir -p "$work"
probe="$work/probe"
if ! command -v "$cxx" >/dev/null ||
   ! printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' |
     "$cxx" -x c++ -fsanitize=fuzzer - -o "$probe" 2>/dev/null; then
  echo "skipped: $cxx with libFuzzer not found (Debian: apt-get install clang libclang-rt-14-dev)"
  exit 77
fi
set -e
cmake -S "$src" -B "$work/build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_BUILD_FUZZ=ON \
  -DCOUPLEVAE_BUILD_TESTS=OFF -DCOUPLEVAE_BUILD_EXAMPLES=OFF -DCOUPLEVAE_BUILD_BENCH=OFF >"$work/configure.log"
cmake --build "$work/build" -j2 >"$work/build.log" || { tail -40 "$work/build.log"; exit 1; }
rm -rf "$work/seeds" "$work/runs"
"$work/build/bin/make_seeds" "$work/seeds"
status=0
for target in corpus vocab checkpoint cli; do
  mkdir -p "$work/runs/$target"
  cp "$work/seeds/$target/"* "$work/runs/$target/"
  log="$work/$target.log"
  if (cd "$work/runs" && "$work/build/bin/fuzz_$target" "$work/runs/$target" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 >"$log" 2>&1); then
    echo "fuzz_$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log"), no finding"
  else
    echo "fuzz_$target: FINDING (log $log):"
    tail -60 "$log"
    status=1
  fi
done
exit $status
