#!/usr/bin/env bash
# scripts/gpu_check.sh: everything issue #6 checks on a GPU, in one command for the device
# tool (after scripts/gpu_prepare.sh, with carry=[".gpu-carry"]):
#   1. configure with COUPLEVAE_WITH_CUDA=ON against the unpacked headers, build the cuda
#      tests, the tool and the GPU benchmark;
#   2. ctest -L cuda (host bodies, device parity of every op and every model, 200 training
#      steps of couple-vae tracking the cpu run, the tool with --backend cuda against cpu
#      evaluation of the same checkpoints);
#   3. compute-sanitizer (memcheck) over the device tests;
#   4. bench/compare_gpu.sh against PyTorch on the same GPU;
#   5. with --full: the 60K-step PTB training of couple-vae through the tool, timed.
# Logs go to $OUT (the device tool brings them back) or ./gpu-logs.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu-carry"
LOGS="${OUT:-$ROOT/gpu-logs}"
FULL=0
[[ "${1:-}" == "--full" ]] && FULL=1
mkdir -p "$LOGS"
[[ -d "$CARRY/root/usr" ]] || { echo "gpu_check.sh: $CARRY is missing: run scripts/gpu_prepare.sh and carry it" >&2; exit 2; }
PTB="$CARRY/ptb"
[[ -f "$PTB/train.txt" ]] || PTB=""
nvidia-smi | tee "$LOGS/nvidia-smi.txt" | head -15
export PATH="$PATH:/usr/local/cuda/bin"  # nvcc, compute-sanitizer
export CMAKE_PREFIX_PATH="$CARRY/root/usr"
export CPLUS_INCLUDE_PATH="$CARRY/root/usr/include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"
step() { echo "== $*"; }

step configure
cmake -S "$ROOT" -B "$ROOT/build-gpu" -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCOUPLEVAE_BUILD_FUZZ=OFF >"$LOGS/configure.log" 2>&1 \
  || { tail -30 "$LOGS/configure.log"; exit 1; }
step build
cmake --build "$ROOT/build-gpu" -j"$(nproc)" --target couplevae_cuda_tests couplevae_cli couplevae_bench_cuda \
  >"$LOGS/build.log" 2>&1 || { grep -E "error" "$LOGS/build.log" | head -30; exit 1; }
if [[ -n "$PTB" ]]; then
  # The tests read PTB from ../shared/data/ptb relative to the source tree.
  mkdir -p "$ROOT/../shared/data" && ln -sfn "$PTB" "$ROOT/../shared/data/ptb"
fi
step "ctest -L cuda"
(cd "$ROOT/build-gpu" && ctest -L cuda -E '^cuda[.]device$' --output-on-failure 2>&1 | tee "$LOGS/ctest-cuda.log" | tail -8)
# The device suite directly, so its messages (the 200-step losses) are kept too.
"$ROOT/build-gpu/bin/couplevae_cuda_tests" --device >"$LOGS/device-tests.log" 2>&1
echo "device tests exit $?"; grep -E "step|largest|PTB|toy|test cases|assertions" "$LOGS/device-tests.log" | tail -12
step compute-sanitizer
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 9 "$ROOT/build-gpu/bin/couplevae_cuda_tests" --device \
    -tce='*200 training steps*' >"$LOGS/memcheck.log" 2>&1  # every device case but the long run
  echo "memcheck exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$LOGS/memcheck.log") clean summaries)"; tail -3 "$LOGS/memcheck.log"
else
  echo "compute-sanitizer not on PATH (try /usr/local/cuda/bin)"
fi
step "compare with PyTorch"
if [[ -n "$PTB" ]]; then
  BENCH="$ROOT/build-gpu/bin/couplevae_bench_cuda" bash "$ROOT/bench/compare_gpu.sh" --data "$PTB" 2>&1 \
    | tee "$LOGS/compare_gpu.log" | tail -22
fi
if ((FULL)) && [[ -n "$PTB" ]]; then
  step "60K steps of couple-vae on PTB"
  rm -rf "$ROOT/gpu-run"
  TIMEFORMAT="60K steps (with validation every 1000): %R s wall"
  time "$ROOT/build-gpu/bin/couplevae" train --backend cuda --model couple-vae --data "$PTB" \
    --out "$ROOT/gpu-run" --log-every 5000 >"$LOGS/full-run.log" 2>&1
  tail -5 "$LOGS/full-run.log"
fi
