#!/usr/bin/env bash
# scripts/gpu_check.sh: everything issue #6 checks on a GPU, for the device tool (after
# scripts/gpu_prepare.sh, with carry=[".gpu-carry"]). The stages:
#   1. the binaries: those gpu_prepare.sh --prebuilt put in .gpu-carry/bin (built on the
#      Debian machine for sm_90 without -march=native, so no device time goes to nvcc), or
#      else configure with COUPLEVAE_WITH_CUDA=ON against the unpacked headers and build;
#   test      the cuda test program: host bodies, then device parity of every op and every
#             model and 200 training steps of couple-vae tracking the cpu run;
#   cli       the tool with --backend cuda against cpu evaluation of the same checkpoints,
#             which Python's safetensors package must read (tests/safetensors_interop.py);
#   bench     bench/compare_gpu.sh against PyTorch on the same GPU, eager and with CUDA Graphs;
#   profile   couplevae_bench_cuda phase by phase (--phases), each COUPLEVAE_CUDA_RECURRENCE,
#             with and without CUDA Graphs of whole steps (COUPLEVAE_CUDA_GRAPHS), interleaved;
#   memcheck  compute-sanitizer over the device tests but the long run (or those matching
#             --memcheck PATTERN);
#   kernels   ncu: each kernel's device time at batch 32 and 512, summed by kernel (after
#             sass: the machine code of the recurrence's and softmax's kernels, into the logs;
#             --one-call runs sass in its phase 1);
#   validation  one PTB validation timed with the default evaluation batching and the 60K run's;
#   full      the 60K-step PTB training of couple-vae through the tool, timed (recurrence
#             $COUPLEVAE_CUDA_RECURRENCE, default fused; with CUDA Graphs when
#             COUPLEVAE_CUDA_GRAPHS=1, or, after the bench stage, in its faster mode).
#
#   bash scripts/gpu_check.sh --one-call
#   bash scripts/gpu_check.sh [--full] [--only STAGES] [--rounds R] [--steps N] [--memcheck PATTERN]
#                             [--deadline SECONDS] [-- COMPARE_GPU_OPTIONS]
#
# --one-call is issue #6 in one device call of at most 10 minutes (a session has 15 minutes
# of device time, the machine's start included, and too little is left after one call to
# start another; give the call timeout_s=600): phase 1 runs the 200-step case (its cpu side
# on 10 cores), the other device cases, memcheck over a subset (the ops, couple-vae's parity
# eager, persistent and from graphs), cli and sass side by side (each case its own
# process) for at most 170 s; phase 2 the bench for
# couple-vae (one round, eager and graphs, no evaluation) for at most 130 s; phase 3 the
# 60K-step run in the faster mode, cut at 300 s (the target: a run that is cut missed it, and
# its log shows how far it got). Its deadline is 585 s.
#
# Otherwise STAGES is a comma list of test,cli,bench,profile,kernels,validation,memcheck,full
# (default: all but kernels, validation and full; --full adds full), one after another. After
# --one-call, with the machine still warm (30 s), `--only validation,profile,kernels
# --deadline 200` uses the rest of a session's 15 minutes. What follows `--` goes to the bench
# stage's bench/compare_gpu.sh; e.g. the CNN pair's cuda speed, never measured yet:
# `--only bench --rounds 1 --steps 100 --deadline 200 -- --models cnn-vae,couple-cnn-vae
# --graphs eager --no-eval`. Each case and stage has a time limit so one hang cannot eat the
# call, and none runs past --deadline (seconds from the start). Logs go to $OUT (the device
# tool brings them back) as logs.tgz, or ./gpu-logs.tgz, after each stage;
# the summary goes to $OUT/summary.txt as it grows and is printed last.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu-carry"
LOGS=/tmp/gpu-logs  # many files: they go back as one archive, $OUT/logs.tgz (or ./gpu-logs.tgz)
rm -rf "$LOGS"
STAGES="test,cli,bench,profile,memcheck"
MEMCHECK="*"
# memcheck in the one call: the ops (GEMMs and rows_gemm, column sums, the fused GRU steps,
# element-wise and row kernels, the generator and the model kernels), couple-vae's parity
# eagerly, with the persistent kernels and replayed from graphs
MEMCHECK_ONE_CALL='GEMM*,the fused GRU*,element-wise*,generator*,model parity: same weights*Coupled<couplevae::Model<couplevae::Posterior<couplevae::Gaussian>*Regularizer<couplevae::KL>*GRU*,model parity with the persistent*Coupled*,training steps replayed*Coupled<couplevae::Model<couplevae::Posterior<couplevae::Gaussian>*'
ROUNDS=2
STEPS=200
ONE_CALL=0
BENCH_OPTS=()  # after --: options of the bench stage's compare_gpu.sh
DEADLINE=100000
while (($#)); do
  case $1 in
    --one-call) ONE_CALL=1 DEADLINE=585 ;;
    --deadline) DEADLINE=$2; shift ;;
    --full) STAGES="$STAGES,full" ;;
    --only) STAGES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    --memcheck) MEMCHECK=$2; shift ;;
    --) shift; BENCH_OPTS=("$@"); break ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
((ONE_CALL && ${#BENCH_OPTS[@]})) && { echo "gpu_check.sh: --one-call sets its bench's options itself (no --)" >&2; exit 2; }
want() { [[ ",$STAGES," == *",$1,"* ]]; }
START=$(date +%s)
left() { echo $((START + DEADLINE - $(date +%s))); }  # seconds to the deadline
mkdir -p "$LOGS"
[[ -d "$CARRY" ]] || { echo "gpu_check.sh: $CARRY is missing: run scripts/gpu_prepare.sh and carry it" >&2; exit 2; }
PTB="$CARRY/ptb"
[[ -f "$PTB/train.txt" ]] || PTB=""
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"
grep -m1 "model name" /proc/cpuinfo
export PATH="$PATH:/usr/local/cuda/bin"  # nvcc, compute-sanitizer
# libgomp travels in .gpu-carry/lib for the prebuilt tests, last so the machine's own comes first
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$CARRY/lib"
SUMMARY_FILE="${OUT:-/tmp}/summary.txt"  # appended to by stages running side by side too
: >"$SUMMARY_FILE"
note() { echo "$*"; echo "$*" >>"$SUMMARY_FILE"; }
min() { echo $(($1 < $2 ? $1 : $2)); }
floor1() { echo $(($1 < 1 ? 1 : $1)); }  # a timeout of 0 would not stop anything
# limit N [END]: N seconds, or fewer: those left to END (epoch seconds; default the deadline)
limit() { floor1 "$(min "$1" $((${2:-$((START + DEADLINE))} - $(date +%s))))"; }
step() { echo "== $* ($(date +%T), $(left) s to the deadline)"; }
# the logs so far, where the device tool brings them back (again after every stage, so that
# a call cut short still returns them)
save_logs() { tar czf "${OUT:-$ROOT}/$([[ -n "${OUT:-}" ]] && echo logs || echo gpu-logs).tgz" -C /tmp gpu-logs; }

if [[ -x "$CARRY/bin/couplevae_cuda_tests" ]]; then
  BIN="$CARRY/bin"
  note "binaries: prebuilt ($(cat "$CARRY/bin/REVISION" 2>/dev/null))"
  if [[ -f "$CARRY/bin/SOURCES" ]] &&
     [[ "$(cd "$ROOT" && xargs -d '\n' sha1sum <"$CARRY/bin/SOURCES" 2>/dev/null | sha1sum | cut -d' ' -f1)" != \
        "$(cat "$CARRY/bin/SOURCES.sha1")" ]]; then
    note "WARNING: the prebuilt binaries were built from other sources than this tree's: run" \
         "scripts/gpu_prepare.sh --prebuilt again before the call (the results below are the old binaries')"
  fi
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
  # (A real folder there is left alone: ln would put the link inside it.)
  for d in "$ROOT/../shared/data" /work/shared/data; do
    [[ -e "$d/ptb" && ! -L "$d/ptb" ]] || { mkdir -p "$d" && ln -sfn "$PTB" "$d/ptb"; }
  done
fi

# cases [PATTERN]: the device test cases (those matching PATTERN), one per line, with the
# commas of their names turned into doctest's one-character wildcard (its filters split at commas).
cases() { "$BIN/couplevae_cuda_tests" -ts=device --list-test-cases -tc="${1:-*}" | grep -v -E '^(\[doctest\]|====)' | tr ',' '?'; }
# run_cases PREFIX PATTERN CMD...: each device case matching PATTERN in its own process under
# CMD, $JOBS at a time (the long run first), each under a time limit of at most 300 s and
# never past $CASES_END (epoch seconds; a case not started by then is reported as such),
# its log in $LOGS/PREFIX-N.log; prints one line per case (exit code, milliseconds, name).
JOBS=8
CASES_END=$((START + DEADLINE))
run_cases() {
  local prefix=$1 filter=$2; shift 2
  local i=0
  while IFS= read -r name; do
    i=$((i + 1))
    echo "$i"$'\t'"$name"
  done < <(cases "$filter" | grep -v -F "${SKIP:-\$none\$}" | awk '/200 training steps/ { print; next } { rest[++n] = $0 } END { for (i = 1; i <= n; ++i) print rest[i] }') \
    | CASES_END=$CASES_END xargs -P "$JOBS" -d '\n' -I{} bash -c '
    n=${1%%$'"'"'\t'"'"'*}; name=${1#*$'"'"'\t'"'"'}; shift
    start=$(date +%s%N)
    limit=$((CASES_END - start / 1000000000)); ((limit > 300)) && limit=300
    if ((limit < 5)); then
      printf "%s not-run       0 ms  %s (deadline)\n" "'"$prefix"'-$n" "$name"
      exit 0
    fi
    timeout "$limit" "$@" -tc="$name" -d >"'"$LOGS"'/'"$prefix"'-$n.log" 2>&1
    rc=$?
    printf "%s exit %d %6d ms  %s\n" "'"$prefix"'-$n" $rc $((($(date +%s%N) - start) / 1000000)) "$name"' _ {} "$@" \
    | sort -V | tee "$LOGS/$prefix-summary.txt"
}
# passed SUMMARY WHAT: "P of N WHAT", and how many the deadline left unrun
passed() {
  local n
  n=$(grep -c ' not-run ' "$1")
  echo "$(grep -c ' exit 0 ' "$1") of $(wc -l <"$1") $2$( ((n)) && echo " ($n not run: the deadline)")"
}

stage_test() {
  step "cuda tests"
  timeout 120 "$BIN/couplevae_cuda_tests" --host >"$LOGS/host-tests.log" 2>&1
  note "host tests: exit $? ($(grep -E '^\[doctest\] (test cases|assertions)' "$LOGS/host-tests.log" | tr '\n' ' '))"
  run_cases device '*' "$BIN/couplevae_cuda_tests" --device
  note "device tests: $(passed "$LOGS/device-summary.txt" "cases pass")"
  show_results 120 "$LOGS"/device-*.log
}
# show_results N LOGS...: the 200-step run's progress lines and the first N lines of failures
show_results() {
  local n=$1
  shift
  grep -h -E "step [0-9]+:|largest|PTB from|toy corpus" "$@" | tail -10
  grep -h -B2 -A8 -E "ERROR|FATAL" "$@" | head -"$n"
}
# The 200-step run alone, its cpu side on OMP_THREADS cores (the one call's phase 1 runs it
# beside the other checks: with 2 threads among 17 processes it reached step 50 of 200 in
# 170 s on the H200 machine, 2026-12-04)
stage_long() {
  step "200 training steps of couple-vae against the cpu"
  local start rc
  start=$(date +%s%N)
  OMP_NUM_THREADS=$OMP_THREADS timeout "$(limit 300 "$CASES_END")" "$BIN/couplevae_cuda_tests" --device \
    -tc="200 training steps*" -d >"$LOGS/long.log" 2>&1
  rc=$?
  note "200 steps against the cpu: exit $rc$( ((rc == 124)) && echo " (cut at the deadline)"), $((($(date +%s%N) - start) / 1000000)) ms"
  show_results 40 "$LOGS/long.log"
}
stage_cli() {
  step "cli --backend cuda"
  timeout "$(limit 300 "$CASES_END")" bash "$ROOT/tests/cuda/cli_cuda_test.sh" "$BIN/couplevae" /tmp/cli-cuda >"$LOGS/cli.log" 2>&1
  note "cli: exit $? ($(tail -1 "$LOGS/cli.log"))"
  grep FAIL "$LOGS/cli.log" | head -10
  # its checkpoints (cuda-trained, one resumed on the cpu) read by Python's safetensors package
  timeout "$(limit 60 "$CASES_END")" python3 "$ROOT/tests/safetensors_interop.py" /tmp/cli-cuda/*/last.safetensors \
    >"$LOGS/safetensors.log" 2>&1
  note "safetensors package: exit $? ($(grep -c ', the same$' "$LOGS/safetensors.log") checkpoints read the same)"
  grep -v ', the same$' "$LOGS/safetensors.log" | head -5
}
# stage_bench LIMIT [OPTIONS]: bench/compare_gpu.sh with --rounds and --steps, then OPTIONS,
# cut after LIMIT seconds (the runs it finished are in its log)
stage_bench() {
  local cut=$1
  shift
  [[ -n "$PTB" ]] || { note "bench: no PTB carried"; return; }
  step "compare with PyTorch"
  BENCH="$BIN/couplevae_bench_cuda" timeout "$cut" bash "$ROOT/bench/compare_gpu.sh" --data "$PTB" \
    --rounds "$ROUNDS" --steps "$STEPS" "$@" >"$LOGS/compare_gpu.log" 2>&1
  note "bench: exit $?"
  # its own log of runs (one JSON line each, named) and their stderr
  local runs
  runs=$(sed -n 's/^log: //p' "$LOGS/compare_gpu.log" | head -1)
  [[ -n "$runs" ]] && cp "$runs" "$LOGS/compare-runs.txt" && cp "$runs.stderr" "$LOGS/compare-runs.stderr" 2>/dev/null
  grep -E '^\|' "$LOGS/compare_gpu.log" | grep -v -E '^\|---' | while IFS= read -r l; do note "  $l"; done
  # every run it finished (also when it was cut), with what the graphs did; and in
  # $LOGS/faster-graphs, 1 when couple-vae trained faster at batch 32 with graphs than without
  [[ -f "$LOGS/compare-runs.txt" ]] || return
  python3 - "$LOGS/compare-runs.txt" "$LOGS/faster-graphs" <<'PY' | while IFS= read -r l; do note "  $l"; done
import json, sys
b32 = {}
for line in open(sys.argv[1]):
    name, _, js = line.partition(" ")
    j = json.loads(js)
    if "steps_per_s" not in j:  # an evaluation
        print("%-32s %7.2f s" % (name, j["seconds"]))
        continue
    if name.startswith("cpp-train-couple-vae-32-"):
        mode = name.rsplit("-", 1)[1]
        b32[mode] = max(b32.get(mode, 0), j["steps_per_s"])
    g = j.get("graphs", {})
    gs = " graphs: %d captures, %d replays, %d patched, %d fallbacks (%s)" % (
        g["captures"], g["replays"], g["patched_nodes"], g["fallbacks"], g["last_fallback"]) if g.get("on") else ""
    print("%-32s %7.1f steps/s %9.0f tokens/s%s" % (name, j["steps_per_s"], j["tokens_per_s"], gs))
open(sys.argv[2], "w").write("1\n" if b32.get("graphs", 0) > b32.get("eager", 0) else "0\n")
PY
}
stage_profile() {
  [[ -n "$PTB" ]] || return
  step "profile: where a step's time goes"
  local failed="" args mode graphs warmup rc
  # MODEL BATCH RECURRENCE [graphs] [ROWS]: graphs runs with COUPLEVAE_CUDA_GRAPHS=1 (padded
  # batches; a long warm-up so that the common shapes are captured before the timed steps);
  # ROWS sets COUPLEVAE_CUDA_ROWS_MAX (0: every backward step's product by cuBLAS and a
  # separate gate kernel, as before the fused backward step; default 64)
  for args in "couple-vae 32 fused graphs" "couple-vae 32 fused" "couple-vae 32 fused graphs 0" \
              "couple-vae 32 persistent" "couple-vae 32 composed" \
              "couple-vae 512 fused graphs" "couple-vae 512 fused" "couple-vae 512 fused - 512" \
              "couple-vae 512 persistent" "couple-vae 32 fused graphs" "couple-vae 32 persistent graphs"; do
    set -- $args
    mode="$3${4:+-$4}"
    [[ " $failed " == *" $mode "* ]] && { echo "skipping $args: that mode failed before"; continue; }
    graphs=0 warmup=20
    [[ "${4:-}" == graphs ]] && graphs=1 warmup=400
    # A run takes seconds; the limit is for a hang (a mode not yet run on a GPU).
    COUPLEVAE_CUDA_ROWS_MAX=${5:-64} COUPLEVAE_CUDA_GRAPHS=$graphs COUPLEVAE_CUDA_RECURRENCE=$3 \
      timeout "$(limit 90)" "$BIN/couplevae_bench_cuda" train \
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
    print('%-10s b%-4d %-10s rows<=%-4s %7.1f steps/s  %6.2f ms/step  issue %6.2f ms  phases %s | %s' % (j['model'],
          j['batch_size'], j.get('recurrence', '?'), j.get('rows_kernel_max', '?'), j['steps_per_s'], 1e3 * j['s_per_step'], 1e3 * j['issue_s_per_step'],
          ' '.join('%s %.2f' % kv for kv in p.items()), gs))"
  done | tee "$LOGS/profile.txt"
  note "profile: $(cat "$LOGS/profile.jsonl" 2>/dev/null | wc -l) runs done (table above)"
}
# stage_validation: one PTB validation of couple-vae (all 3,370 sentences, N = 10) timed with
# the default evaluation batching (32 sentences, 256 decoded together) and with the 60K
# run's (256, 2560); the first run of each only warms the device up.
stage_validation() {
  [[ -n "$PTB" ]] || { note "validation: no PTB carried"; return; }
  step "a PTB validation's time by evaluation batching"
  local b r
  for b in "32 256" "32 256" "256 2560" "256 2560"; do
    set -- $b
    timeout "$(limit 60)" "$BIN/couplevae_bench_cuda" eval --model couple-vae --data "$PTB" --split valid \
      --samples 10 --max-sentences 100000 --eval-batch-size "$1" --eval-rows "$2" 2>>"$LOGS/validation.err" |
      tee -a "$LOGS/validation.jsonl"
  done
  python3 - "$LOGS/validation.jsonl" <<'PY' | while IFS= read -r l; do note "  $l"; done
import json, sys
seen = set()
for line in open(sys.argv[1]):
    j = json.loads(line)
    key = (j['eval_batch_size'], j['eval_rows'])
    print('validation, batches of %d, %d decoded together: %.2f s, nll %.3f%s' % (key + (j['seconds'], j['nll'],
          '' if key in seen else ' (warm-up)')))
    seen.add(key)
PY
}
# stage_full LIMIT: the 60K-step run, cut after LIMIT seconds
stage_full() {
  [[ -n "$PTB" ]] || { note "full: no PTB carried"; return; }
  step "60K steps of couple-vae on PTB (graphs: ${COUPLEVAE_CUDA_GRAPHS:-0})"
  rm -rf /tmp/gpu-run
  local start rc
  start=$(date +%s.%N)
  # Validations in batches of 256 sentences, 2560 decoded together: about 4x fewer launches
  # than batches of 32 (the mock's count), the same estimator with other noise.
  timeout "$1" "$BIN/couplevae" train --backend cuda --model couple-vae --data "$PTB" \
    --out /tmp/gpu-run --log-every 1000 --eval-batch-size 256 --eval-rows 2560 >"$LOGS/full-run.log" 2>&1
  rc=$?
  note "60K steps of couple-vae (graphs ${COUPLEVAE_CUDA_GRAPHS:-0}, validation every 1000 in batches of 256 included; its seconds on each valid line): exit $rc$( ((rc == 124)) && echo " (cut at $1 s)"), $(python3 -c "import time; print('%.1f s wall' % (time.time() - $start))")"
  note "  last lines: $(grep -E '^(step|valid|best|test)' "$LOGS/full-run.log" | tail -2 | tr '\n' ' ')"
  note "  validations: $(grep -E '^valid step' "$LOGS/full-run.log" | sed -nE 's/.*\(([0-9.]+) s\).*/\1/p' |
    awk '{ n++; s += $1 } END { printf "%d, %.1f s in all", n, s }')"
  tail -4 "$LOGS/full-run.log"
}
# stage_kernels: each kernel's device time under ncu (gpu__time_duration) for couple-vae at
# batch 32 and 512, summed by kernel over about 1.4 steps, the largest first. (ncu locks
# the clocks to base and flushes the caches between kernels, so latency-bound kernels read
# longer than in a run; the shares are what to read.)
stage_kernels() {
  [[ -n "$PTB" ]] || return
  command -v ncu >/dev/null || { note "kernels: ncu not on PATH"; return; }
  step "kernels under ncu"
  local args batch skip count steps
  for args in "32 3000 900 20" "512 2000 1500 6"; do
    set -- $args
    batch=$1 skip=$2 count=$3 steps=$4
    timeout "$(limit 100)" ncu --launch-skip "$skip" --launch-count "$count" --metrics gpu__time_duration.sum --csv \
      "$BIN/couplevae_bench_cuda" train --model couple-vae --data "$PTB" --batch-size "$batch" --steps "$steps" \
      --warmup 3 --gemm-reps 1 >"$LOGS/ncu-$batch.csv" 2>"$LOGS/ncu-$batch.err"
    note "kernels at batch $batch: exit $?"
    python3 - "$LOGS/ncu-$batch.csv" <<'PY' | while IFS= read -r l; do note "  $l"; done
import collections, csv, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
total, count = collections.defaultdict(float), collections.Counter()
for r in rows:
    name = r["Kernel Name"]
    if "for_each_kernel" in name:  # the body's type names the kernel
        name = name[name.find("<", name.find("for_each_kernel")) :]
    name = name[:90]
    total[name] += float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1.0)
    count[name] += 1
whole = sum(total.values())
print("%d kernels, %.2f ms in all" % (sum(count.values()), whole / 1e3))
for name, us in sorted(total.items(), key=lambda kv: -kv[1])[:15]:
    print("%5.1f%% %9.1f us %5d x %7.1f us  %s" % (100 * us / whole, us, count[name], us / count[name], name))
PY
  done
}
# stage_sass: the machine code of the recurrence's, softmax's and BatchNorm's kernels, and every
# kernel's registers, spills and shared memory, into the logs: the Debian machine has nvcc
# and ptxas but no disassembler, so what the compiler made of a kernel is read from these.
# Notes, per kernel, how many global loads come before its first store to shared memory in
# the code: rows_product issues a chunk's loads before storing any (for float, 32 of A and
# 12 or 4 of B, after the gates' 7 or 8 inputs: about 50 in the step kernels, 36 in
# rows_gemm_kernel); one or two would mean a load at a time again.
stage_sass() {
  command -v cuobjdump >/dev/null || { note "sass: cuobjdump not on PATH"; return; }
  cuobjdump -res-usage "$BIN/couplevae_bench_cuda" >"$LOGS/res-usage.txt" 2>&1
  cuobjdump -sass "$BIN/couplevae_bench_cuda" 2>/dev/null |
    awk '/Function : / { keep = ($0 ~ /gru_step_kernel|rows_gemm_kernel|gru_pass_kernel|softmax_xent_kernel|batchnorm_/) } keep' \
    >"$LOGS/sass-kernels.txt"
  note "sass: $(grep -c 'Function : ' "$LOGS/sass-kernels.txt") kernels' machine code (sass-kernels.txt) and res-usage.txt in logs.tgz"
  awk '/Function : / { if (name != "") print n " loads before the first shared store: " name; name = $3; n = 0; sts = 0; next }
       /STS/ { sts = 1 } /LDG/ && !sts { n++ }
       END { if (name != "") print n " loads before the first shared store: " name }' "$LOGS/sass-kernels.txt" |
    cut -c1-150 | while IFS= read -r l; do note "  $l"; done
}
stage_memcheck() {
  step compute-sanitizer
  if ! command -v compute-sanitizer >/dev/null; then
    note "memcheck: compute-sanitizer not on PATH"
    return
  fi
  # every device case but the long run, each under memcheck in its own process
  SKIP='200 training steps' run_cases memcheck "$MEMCHECK" compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$BIN/couplevae_cuda_tests" --device >/dev/null
  note "memcheck: $(passed "$LOGS/memcheck-summary.txt" "runs clean")"
  grep -v ' exit 0 ' "$LOGS/memcheck-summary.txt"
  grep -h -m3 -A8 "Invalid\|Race\|Uninitialized\|Error" "$LOGS"/memcheck-*.log | head -40
}

if ((ONE_CALL)); then
  # phase 1: the correctness checks side by side, at most 170 s (their outputs one after
  # another): the 200-step run with its cpu side on 10 cores; the other device cases, 3 at a
  # time, and compute-sanitizer over the cases of the ops, the fused step, one model's
  # parity and its graphs, 3 at a time, each on one core; the tool's checks; the kernels'
  # machine code (sass).
  CASES_END=$((START + 170))
  export OMP_NUM_THREADS=1
  stage_sass >"$LOGS/phase1-sass.out" 2>&1 &
  OMP_THREADS=10 stage_long >"$LOGS/phase1-long.out" 2>&1 &
  JOBS=3 SKIP='200 training steps' stage_test >"$LOGS/phase1-test.out" 2>&1 &
  JOBS=3 MEMCHECK="$MEMCHECK_ONE_CALL" stage_memcheck >"$LOGS/phase1-memcheck.out" 2>&1 &
  stage_cli >"$LOGS/phase1-cli.out" 2>&1 &
  wait
  cat "$LOGS"/phase1-{sass,long,test,cli,memcheck}.out
  save_logs
  unset OMP_NUM_THREADS
  # phase 2: the speed of couple-vae against PyTorch, eager and with graphs
  ROUNDS=1
  stage_bench "$(floor1 "$(min 130 $(($(left) - 300)))")" --models couple-vae --graphs both --no-eval
  save_logs
  # phase 3: the 60K-step run in the mode that trained faster at batch 32 (eager when unknown)
  COUPLEVAE_CUDA_GRAPHS=$(cat "$LOGS/faster-graphs" 2>/dev/null || echo 0) stage_full "$(limit 300)"
else
  want test && stage_test
  want cli && stage_cli
  want bench && stage_bench "$(limit 900)" "${BENCH_OPTS[@]}"
  want validation && stage_validation
  want profile && stage_profile
  want kernels && { stage_sass; stage_kernels; }
  want full && stage_full "$(limit 560)"
  want memcheck && stage_memcheck
  [[ -f "$LOGS/compare_gpu.log" ]] && { echo; tail -22 "$LOGS/compare_gpu.log"; }
fi
save_logs
echo
cat "$SUMMARY_FILE"
