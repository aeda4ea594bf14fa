#!/usr/bin/env bash
# scripts/gpu_check.sh: everything issue #6 checks on a GPU, for the device tool (after
# scripts/gpu_prepare.sh, with carry=[".gpu-carry"]); all of it takes about 12 minutes, more
# than one device call may run, so split it with --only (test,cli,profile,memcheck, then bench):
#   1. the binaries: those gpu_prepare.sh --prebuilt put in .gpu-carry/bin (built on the
#      Debian machine for sm_90 without -march=native, so no device time goes to nvcc), or
#      else configure with COUPLEVAE_WITH_CUDA=ON against the unpacked headers and build;
#   2. the cuda test program: host bodies, then device parity of every op and every model and
#      200 training steps of couple-vae tracking the cpu run;
#   3. the tool with --backend cuda against cpu evaluation of the same checkpoints;
#   4. bench/compare_gpu.sh against PyTorch on the same GPU;
#   5. profile: couplevae_bench_cuda phase by phase (--phases), each COUPLEVAE_CUDA_RECURRENCE,
#      with and without CUDA Graphs of whole steps (COUPLEVAE_CUDA_GRAPHS), interleaved;
#   6. compute-sanitizer (memcheck) over the device tests but the long run (or those matching
#      --memcheck PATTERN);
#   7. with --full: the 60K-step PTB training of couple-vae through the tool, timed (in the
#      recurrence mode of $COUPLEVAE_CUDA_RECURRENCE, default fused, and with CUDA Graphs when
#      COUPLEVAE_CUDA_GRAPHS=1).
#
#   bash scripts/gpu_check.sh [--full] [--only STAGES] [--rounds R] [--steps N] [--memcheck PATTERN]
#
# STAGES is a comma list of test,cli,bench,profile,memcheck,full (default: all but full;
# --full adds it). Each stage has a time limit so one hang cannot eat the call. Logs go to
# $OUT (the device tool brings them back) as logs.tgz, or ./gpu-logs.tgz; a summary is
# printed last.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu-carry"
LOGS=/tmp/gpu-logs  # many files: they go back as one archive, $OUT/logs.tgz (or ./gpu-logs.tgz)
rm -rf "$LOGS"
STAGES="test,cli,bench,profile,memcheck"
MEMCHECK="*"
ROUNDS=2
STEPS=200
while (($#)); do
  case $1 in
    --full) STAGES="$STAGES,full" ;;
    --only) STAGES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    --memcheck) MEMCHECK=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$STAGES," == *",$1,"* ]]; }
mkdir -p "$LOGS"
[[ -d "$CARRY" ]] || { echo "gpu_check.sh: $CARRY is missing: run scripts/gpu_prepare.sh and carry it" >&2; exit 2; }
PTB="$CARRY/ptb"
[[ -f "$PTB/train.txt" ]] || PTB=""
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"
grep -m1 "model name" /proc/cpuinfo
export PATH="$PATH:/usr/local/cuda/bin"  # nvcc, compute-sanitizer
# libgomp travels in .gpu-carry/lib for the prebuilt tests, last so the machine's own comes first
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$CARRY/lib"
SUMMARY=()
note() { echo "$*"; SUMMARY+=("$*"); }
step() { echo "== $* ($(date +%T))"; }

if [[ -x "$CARRY/bin/couplevae_cuda_tests" ]]; then
  BIN="$CARRY/bin"
  note "binaries: prebuilt ($(cat "$CARRY/bin/REVISION" 2>/dev/null))"
else
  step build
  export CMAKE_PREFIX_PATH="$CARRY/root/usr"
  export CPLUS_INCLUDE_PATH="$CARRY/root/usr/include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"
  cmake -S "$ROOT" -B "$ROOT/build-gpu" -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCOUPLEVAE_BUILD_FUZZ=OFF -DCOUPLEVAE_TESTS_O1=OFF >"$LOGS/configure.log" 2>&1 \
    || { tail -30 "$LOGS/configure.log"; exit 1; }
  cmake --build "$ROOT/build-gpu" -j"$(nproc)" --target couplevae_cuda_tests couplevae_cli couplevae_bench_cuda \
    >"$LOGS/build.log" 2>&1 || { grep -E "error" "$LOGS/build.log" | head -30; exit 1; }
  BIN="$ROOT/build-gpu/bin"
fi
if [[ -n "$PTB" ]]; then
  # The tests read PTB from <source>/../shared/data/ptb, as compiled in; link both the
  # source tree's and the Debian machine's (/work/main) so prebuilt binaries find it too.
  for d in "$ROOT/../shared/data" /work/shared/data; do mkdir -p "$d" && ln -sfn "$PTB" "$d/ptb"; done
fi

# cases [PATTERN]: the device test cases (those matching PATTERN), one per line, with the
# commas of their names turned into doctest's one-character wildcard (its filters split at commas).
cases() { "$BIN/couplevae_cuda_tests" -ts=device --list-test-cases -tc="${1:-*}" | grep -v -E '^(\[doctest\]|====)' | tr ',' '?'; }
# run_cases PREFIX PATTERN CMD...: each device case matching PATTERN in its own process under
# CMD, 8 at a time, each under a time limit, its log in $LOGS/PREFIX-N.log; prints one line
# per case (exit code, milliseconds, name).
run_cases() {
  local prefix=$1 filter=$2; shift 2
  local i=0
  while IFS= read -r name; do
    i=$((i + 1))
    echo "$i"$'\t'"$name"
  done < <(cases "$filter") | xargs -P 8 -d '\n' -I{} bash -c '
    n=${1%%$'"'"'\t'"'"'*}; name=${1#*$'"'"'\t'"'"'}; shift
    start=$(date +%s%N)
    timeout 300 "$@" -tc="$name" -d >"'"$LOGS"'/'"$prefix"'-$n.log" 2>&1
    rc=$?
    printf "%s exit %d %6d ms  %s\n" "'"$prefix"'-$n" $rc $((($(date +%s%N) - start) / 1000000)) "$name"' _ {} "$@" \
    | sort -V | tee "$LOGS/$prefix-summary.txt"
}

if want test; then
  step "cuda tests"
  timeout 120 "$BIN/couplevae_cuda_tests" --host >"$LOGS/host-tests.log" 2>&1
  note "host tests: exit $? ($(grep -E '^\[doctest\] (test cases|assertions)' "$LOGS/host-tests.log" | tr '\n' ' '))"
  run_cases device '*' "$BIN/couplevae_cuda_tests" --device
  note "device tests: $(grep -c ' exit 0 ' "$LOGS/device-summary.txt") of $(wc -l <"$LOGS/device-summary.txt") cases pass"
  grep -h -E "step [0-9]+:|largest|PTB from|toy corpus" "$LOGS"/device-*.log | tail -6
  grep -h -B2 -A8 -E "ERROR|FATAL" "$LOGS"/device-*.log | head -120
fi
if want cli; then
  step "cli --backend cuda"
  timeout 300 bash "$ROOT/tests/cuda/cli_cuda_test.sh" "$BIN/couplevae" /tmp/cli-cuda >"$LOGS/cli.log" 2>&1
  note "cli: exit $? ($(tail -1 "$LOGS/cli.log"))"
  grep FAIL "$LOGS/cli.log" | head -10
fi
if want bench && [[ -n "$PTB" ]]; then
  step "compare with PyTorch"
  BENCH="$BIN/couplevae_bench_cuda" timeout 900 bash "$ROOT/bench/compare_gpu.sh" --data "$PTB" \
    --rounds "$ROUNDS" --steps "$STEPS" >"$LOGS/compare_gpu.log" 2>&1
  note "bench: exit $?"
  cp /tmp/couplevae-compare-gpu.* "$LOGS/" 2>/dev/null
fi
if want profile && [[ -n "$PTB" ]]; then
  step "profile: where a step's time goes"
  failed=""
  # MODEL BATCH RECURRENCE [graphs]: graphs runs with COUPLEVAE_CUDA_GRAPHS=1 (padded
  # batches; a long warm-up so that the common shapes are captured before the timed steps)
  for args in "couple-vae 32 fused graphs" "couple-vae 32 fused" "couple-vae 32 persistent" "couple-vae 32 composed" \
              "couple-vae 512 fused graphs" "couple-vae 512 fused" "couple-vae 512 persistent" \
              "couple-vae 32 fused graphs" "couple-vae 32 persistent graphs"; do
    set -- $args
    mode="$3${4:+-$4}"
    [[ " $failed " == *" $mode "* ]] && { echo "skipping $args: that mode failed before"; continue; }
    graphs=0 warmup=20
    [[ "${4:-}" == graphs ]] && graphs=1 warmup=400
    # A run takes seconds; the limit is for a hang (a mode not yet run on a GPU).
    COUPLEVAE_CUDA_GRAPHS=$graphs COUPLEVAE_CUDA_RECURRENCE=$3 timeout 90 "$BIN/couplevae_bench_cuda" train \
      --model "$1" --data "$PTB" --batch-size "$2" --steps 100 --warmup $warmup --phases 20 --gemm-reps 1 \
      2>>"$LOGS/profile.err" >"$LOGS/profile-run.json"
    rc=$?
    if ((rc)); then
      echo "$args: failed (exit $rc; stderr in profile.err)"
      failed="$failed $mode"
      continue
    fi
    tee -a "$LOGS/profile.jsonl" <"$LOGS/profile-run.json" | python3 -c "
import json, sys
for l in sys.stdin:
    j = json.loads(l); p = j.get('phases_ms', {})
    g = j.get('graphs', {})
    gs = 'graphs: %d captures %d replays %d patched %d fallbacks %s' % (g['captures'], g['replays'],
         g['patched_nodes'], g['fallbacks'], g['last_fallback']) if g.get('on') else 'eager'
    print('%-10s b%-4d %-10s %7.1f steps/s  %6.2f ms/step  issue %6.2f ms  phases %s | %s' % (j['model'], j['batch_size'],
          j.get('recurrence', '?'), j['steps_per_s'], 1e3 * j['s_per_step'], 1e3 * j['issue_s_per_step'],
          ' '.join('%s %.2f' % kv for kv in p.items()), gs))"
  done | tee "$LOGS/profile.txt"
  note "profile: $(cat "$LOGS/profile.jsonl" 2>/dev/null | wc -l) runs done (table above)"
fi
if want full && [[ -n "$PTB" ]]; then
  step "60K steps of couple-vae on PTB"
  rm -rf /tmp/gpu-run
  start=$(date +%s.%N)
  timeout 560 "$BIN/couplevae" train --backend cuda --model couple-vae --data "$PTB" \
    --out /tmp/gpu-run --log-every 5000 >"$LOGS/full-run.log" 2>&1
  rc=$?
  note "60K steps of couple-vae (validation every 1000 included): exit $rc, $(python3 -c "import time; print('%.1f s wall' % (time.time() - $start))")"
  tail -4 "$LOGS/full-run.log"
fi
if want memcheck; then
  step compute-sanitizer
  if command -v compute-sanitizer >/dev/null; then
    # every device case but the long run, each under memcheck in its own process
    run_cases memcheck "$MEMCHECK" compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/couplevae_cuda_tests" --device \
      -tce='*200 training steps*' >/dev/null
    note "memcheck: $(grep -c ' exit 0 ' "$LOGS/memcheck-summary.txt") of $(wc -l <"$LOGS/memcheck-summary.txt") runs clean"
    grep -v ' exit 0 ' "$LOGS/memcheck-summary.txt"
    grep -h -m3 -A8 "Invalid\|Race\|Uninitialized\|Error" "$LOGS"/memcheck-*.log | head -40
  else
    note "memcheck: compute-sanitizer not on PATH"
  fi
fi
if [[ -f "$LOGS/compare_gpu.log" ]]; then echo; tail -22 "$LOGS/compare_gpu.log"; fi
tar czf "${OUT:-$ROOT}/$([[ -n "${OUT:-}" ]] && echo logs || echo gpu-logs).tgz" -C /tmp gpu-logs
echo
printf '%s\n' "${SUMMARY[@]}"
