#!/usr/bin/env bash
# A shortened PTB comparison of models: the paper's schedule scaled down from 60K steps to
# --steps S (KL annealing from S/30 over 2S/3 steps, as the paper's 2K -> 42K of 60K; the
# learning-rate decay at 30K is left out when S <= 30K), then every test metric of each run
# (`couplevae eval`, all metrics, 100 importance samples) and the paper's tables over the runs
# (`couplevae report`). The numbers in README's "A shortened PTB run" come from
#
#   bash scripts/ptb_short.sh --bin build/bin/couplevae --steps 10000 --parallel
#
# Options:
#   --bin FILE       the couplevae tool (default build/bin/couplevae)
#   --data DIR       PTB's train/valid/test.txt (default ../shared/data/ptb)
#   --steps S        training steps per model (default 10000)
#   --models "A B"   model names (default "vae couple-vae")
#   --out DIR        runs land in DIR/<model> (default ptb-short)
#   --parallel       train the models at once, one thread each (else one after another)
#   --seed N         training seed (default 1)
#   --lambda-c "L.." coupling weights (default: the preset's); each Coupled model is trained
#                    once per value, into DIR/<model>-lc<L>, so one call can sweep lambda_c
#                    (the paper's Table 3), e.g. --models "vae couple-vae" --lambda-c "1 10"
#   --track-every K  record the gradient-norm dynamics (paper Figure 2) every K steps on 500
#                    validation sentences (default: at each validation, every S/5 steps)
#   --train-args "OPTS"  further `couplevae train` options for every run, e.g. smaller sizes
#                    for a quick try: --train-args "--embed 32 --hidden 32 --latent 8"
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/bin/couplevae data=../shared/data/ptb steps=10000 models="vae couple-vae" out=ptb-short
parallel=0 seed=1 lambdas= train_args= track_every=
while (($#)); do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --parallel) parallel=1; shift ;;
    --seed) seed=$2; shift 2 ;;
    --lambda-c) lambdas=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    --track-every) track_every=$2; shift 2 ;;
    *) echo "ptb_short.sh: unknown option '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "ptb_short.sh: no couplevae tool at '$bin' (build the couplevae_cli target, or pass --bin)" >&2; exit 2; }
for split in train valid test; do
  [[ -f $data/$split.txt ]] || { echo "ptb_short.sh: skipped: PTB is not at '$data' ($split.txt missing; pass --data DIR)" >&2; exit 0; }
done
[[ $steps =~ ^[0-9]+$ ]] && ((steps >= 300)) || { echo "ptb_short.sh: --steps must be a number >= 300 (got '$steps')" >&2; exit 2; }
# The runs: "model" (the preset's lambda_c) or "model lambda_c" each.
runs_spec=()
for m in $models; do
  if [[ -z $lambdas || $m != couple-* ]]; then runs_spec+=("$m"); continue; fi  # one run of an uncoupled model
  for l in $lambdas; do
    [[ $l =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "ptb_short.sh: --lambda-c takes non-negative numbers (got '$l')" >&2; exit 2; }
    runs_spec+=("$m $l")
  done
done

kl_start=$((steps / 30)) kl_steps=$(((2 * steps + 1) / 3))
valid_every=$((steps / 5))
[[ -z $track_every ]] && track_every=$valid_every
[[ $track_every =~ ^[0-9]+$ ]] && ((track_every >= 1)) || { echo "ptb_short.sh: --track-every must be a number >= 1 (got '$track_every')" >&2; exit 2; }
mkdir -p "$out"
run_dir() {  # "model [lambda_c]" -> DIR/model or DIR/model-lcL
  set -- $1
  echo "$out/$1${2:+-lc$2}"
}
train() {  # "model [lambda_c]"
  set -- $1
  "$bin" train --model "$1" --data "$data" --preset ptb --steps "$steps" --seed "$seed" --out "$(run_dir "$*")" \
    --overwrite ${2:+--lambda-c "$2"} --kl-start "$kl_start" --kl-anneal-steps "$kl_steps" \
    --valid-every "$valid_every" --valid-max-sentences 1000 --log-every 500 --track-every "$track_every" --track-sentences 500 \
    $train_args
}
echo "PTB, $steps steps, KL annealing from step $kl_start over $kl_steps steps; logs in $out/<run>.log"
# A run that fails (or is killed) is named at the end, and the others are still evaluated and
# reported; the script then exits 1.
failed=()
if ((parallel)); then
  pids=()
  for r in "${runs_spec[@]}"; do OMP_NUM_THREADS=1 train "$r" >"$(run_dir "$r").log" 2>&1 & pids+=($!); done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${runs_spec[$i]}"); done
else
  for r in "${runs_spec[@]}"; do
    train "$r" 2>&1 | tee "$(run_dir "$r").log" || failed+=("$r")
  done
fi
runs=()
for r in "${runs_spec[@]}"; do
  [[ " ${failed[*]-} " == *" $r "* ]] && continue
  dir=$(run_dir "$r")
  echo "== evaluating $(basename "$dir") on the test split"
  if "$bin" eval --checkpoint "$dir/best.safetensors" --data "$data" --split test --json-out "$dir/eval.json" \
    2>&1 | tee "$dir.eval.log" | grep -v '^{'; then
    runs+=("$dir")
  else
    failed+=("$r")
  fi
done
if ((${#runs[@]})); then
  "$bin" report --runs "${runs[@]}" --out "$out/report.md"
  cat "$out/report.md"
fi
if ((${#failed[@]})); then
  for r in "${failed[@]}"; do echo "ptb_short.sh: $r failed: see $(run_dir "$r").log (or .eval.log)" >&2; done
  exit 1
fi
