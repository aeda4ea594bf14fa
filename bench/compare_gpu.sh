#!/usr/bin/env bash
# bench/compare_gpu.sh: couplevae's cuda backend against PyTorch on the same GPU (bench/torch_ref.py
# --device cuda, PyTorch 2.x with cuDNN as installed there), for each model of --models:
#   1. training steps/s at batch 32 (PTB preset), the ratio, and the projected time of a
#      60K-step PTB run;
#   2. training tokens/s at batch 512, the ratio;
#   3. importance-sampled NLL over the first M test sentences x S samples, the ratio.
# Training runs eager, with CUDA Graphs of whole steps (COUPLEVAE_CUDA_GRAPHS=1: bucketed
# batches, --graph-warmup warm-up steps so the common shapes are captured first), or both.
#
#   bench/compare_gpu.sh [--data DIR] [--steps N] [--warmup W] [--eval-sentences M]
#                        [--eval-samples S] [--rounds R] [--models "vae couple-vae"]
#                        [--graphs eager|graphs|both] [--graph-warmup G] [--no-eval]
#
# Defaults: --data ../shared/data/ptb, --steps 200, --warmup 20, --eval-sentences 500,
# --eval-samples 100, --rounds 2 (best round kept), --models "vae couple-vae" (any of vae,
# couple-vae, cnn-vae, couple-cnn-vae: the models torch_ref.py has), --graphs both,
# --graph-warmup 400. The benchmark binary is $BENCH, or
# build-cuda/bin/couplevae_bench_cuda (configured with COUPLEVAE_WITH_CUDA=ON and built when
# missing; pass CMAKE_PREFIX_PATH for the unpacked Debian headers on a machine without
# them). PyTorch runs with $PYTHON (default: python3). The JSON of every run goes to a log
# whose path is printed; the table is printed last.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/../shared/data/ptb"
STEPS=200
WARMUP=20
EVAL_SENTENCES=500
EVAL_SAMPLES=100
ROUNDS=2
PYTHON="${PYTHON:-python3}"
MODELS="vae couple-vae"
GRAPHS=both
GRAPH_WARMUP=400
EVAL=1

HELP_LINES=22
# shellcheck source=bench/args.sh
source "$ROOT/bench/args.sh"
shared=()  # the options bench/args.sh parses
while [[ $# -gt 0 ]]; do
  case "$1" in
    --graphs) need_value "$@"; GRAPHS="$2"; shift 2 ;;
    --graph-warmup) need_value "$@"; posint "$1" "$2" 0; GRAPH_WARMUP="$2"; shift 2 ;;
    --no-eval) EVAL=0; shift ;;
    *) shared+=("$1"); shift ;;
  esac
done
parse_args "${shared[@]}"
case "$GRAPHS" in
  eager) MODES=(eager) ;;
  graphs) MODES=(graphs) ;;
  both) MODES=(eager graphs) ;;
  *) die "--graphs must be eager, graphs or both (got '$GRAPHS')" ;;
esac
check_data
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this comparison needs an NVIDIA GPU"
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
  || die "$PYTHON has no PyTorch with CUDA"
TORCH_REF="$ROOT/bench/torch_ref.py"

built BENCH build-cuda couplevae_bench_cuda couplevae_bench_cuda -DCOUPLEVAE_WITH_CUDA=ON \
  -DCOUPLEVAE_BUILD_TESTS=OFF -DCOUPLEVAE_BUILD_EXAMPLES=OFF

LOG="$(mktemp "${TMPDIR:-/tmp}/couplevae-compare-gpu.XXXXXX")"
echo "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
echo "log: $LOG"

# run NAME CMD...: one JSON line (the last line of stdout) appended to the log as "NAME <json>".
run() {
  local name=$1
  shift
  local out
  out="$("$@" 2>>"$LOG.stderr" | tail -n 1)" || die "$name failed (stderr in $LOG.stderr)"
  echo "$name $out" >>"$LOG"
  echo "$out"
}
# best KEY MODE JSON...: the max (MODE=max) or min (MODE=min) of KEY over the JSON lines.
best() {
  local key=$1 mode=$2
  shift 2
  printf '%s\n' "$@" | "$PYTHON" -c "
import json, sys
v = [json.loads(l)['$key'] for l in sys.stdin if l.strip()]
print(max(v) if '$mode' == 'max' else min(v))"
}

declare -A R
for model in $MODELS; do
  for batch in 32 512; do
    py=()
    declare -A runs=()  # each mode's JSON lines
    for ((r = 0; r < ROUNDS; r++)); do
      for mode in "${MODES[@]}"; do
        graphs=0 warmup=$WARMUP
        [[ $mode == graphs ]] && graphs=1 warmup=$((WARMUP > GRAPH_WARMUP ? WARMUP : GRAPH_WARMUP))
        runs[$mode]+="$(COUPLEVAE_CUDA_GRAPHS=$graphs run "cpp-train-$model-$batch-$mode" "$BENCH" train --model "$model" \
                         --data "$DATA" --steps "$STEPS" --warmup "$warmup" --batch-size "$batch" --gemm-reps 3)"$'\n'
      done
      py+=("$(run "torch-train-$model-$batch" "$PYTHON" "$TORCH_REF" bench --device cuda --model "$model" \
              --data "$DATA" --steps "$STEPS" --warmup "$WARMUP" --batch "$batch")")
    done
    for mode in "${MODES[@]}"; do
      R[$model,$batch,$mode,cpp_steps]=$(best steps_per_s max "${runs[$mode]}")
      R[$model,$batch,$mode,cpp_tok]=$(best tokens_per_s max "${runs[$mode]}")
    done
    unset runs
    R[$model,$batch,py_steps]=$(best steps_per_s max "${py[@]}")
    R[$model,$batch,py_tok]=$(best tokens_per_s max "${py[@]}")
  done
  ((EVAL)) || continue
  cpp=() py=()
  for ((r = 0; r < ROUNDS; r++)); do
    cpp+=("$(run "cpp-eval-$model" "$BENCH" eval --model "$model" --data "$DATA" --samples "$EVAL_SAMPLES" \
            --max-sentences "$EVAL_SENTENCES")")
    py+=("$(run "torch-eval-$model" "$PYTHON" "$TORCH_REF" bench-eval --device cuda --model "$model" --data "$DATA" \
            --samples "$EVAL_SAMPLES" --max-sentences "$EVAL_SENTENCES")")
  done
  R[$model,cpp_eval]=$(best seconds min "${cpp[@]}")
  R[$model,py_eval]=$(best seconds min "${py[@]}")
done

ratio() { "$PYTHON" -c "print('%.2fx' % ($1 / $2))"; }
fmt() { "$PYTHON" -c "print('%.1f' % $1)"; }
echo
echo "Training at batch 32 (best of $ROUNDS; ratio = couplevae / torch, > 1 is faster)"
echo "| model | steps | couplevae steps/s | torch steps/s | ratio | 60K steps, couplevae (projected) |"
echo "|---|---|---|---|---|---|"
for model in $MODELS; do
  for mode in "${MODES[@]}"; do
    c=${R[$model,32,$mode,cpp_steps]} p=${R[$model,32,py_steps]}
    echo "| $model | $mode | $(fmt "$c") | $(fmt "$p") | $(ratio "$c" "$p") | $("$PYTHON" -c "print('%.1f min' % (60000 / $c / 60))") |"
  done
done
echo
echo "Training at batch 512: tokens/s"
echo "| model | steps | couplevae tokens/s | torch tokens/s | ratio |"
echo "|---|---|---|---|---|"
for model in $MODELS; do
  for mode in "${MODES[@]}"; do
    c=${R[$model,512,$mode,cpp_tok]} p=${R[$model,512,py_tok]}
    echo "| $model | $mode | $(fmt "$c") | $(fmt "$p") | $(ratio "$c" "$p") |"
  done
done
((EVAL)) || exit 0
echo
echo "Evaluation, $EVAL_SENTENCES sentences x $EVAL_SAMPLES samples (ratio = torch s / couplevae s)"
echo "| model | couplevae s | torch s | ratio |"
echo "|---|---|---|---|"
for model in $MODELS; do
  c=${R[$model,cpp_eval]} p=${R[$model,py_eval]}
  echo "| $model | $(fmt "$c") | $(fmt "$p") | $(ratio "$p" "$c") |"
done
