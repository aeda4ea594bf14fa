#!/usr/bin/env bash
# bench/time_to_quality.sh: how long couplevae and the PyTorch reference (bench/torch_ref.py)
# take on the CPU to reach the same validation NLL, training the same model on PTB with the
# same schedule, one after the other, each on --threads threads.
#
#   bench/time_to_quality.sh [--data DIR] [--steps N] [--valid-every K] [--valid-sentences M]
#                            [--threads T] [--models LIST]
#
# Defaults: --data ../shared/data/ptb, --steps 1000, --valid-every 200, --valid-sentences
# 500, --threads 2, --models "vae couple-vae" (any of vae couple-vae cnn-vae couple-cnn-vae).
# The PTB preset otherwise, with the KL annealing scaled to the run as scripts/ptb_short.sh
# scales it (start at N/30, over 2N/3 steps, as the paper's 2K and 40K of 60K), seed 0.
# Every K steps both validate: the importance-sampled NLL with 10 samples on the first M
# validation sentences. The seconds reported are training seconds (validations excluded):
# torch_ref.py counts them itself; for couplevae the tool's lines are timestamped as they
# come and each validation's own seconds are subtracted. The tool is $CLI, or
# build/bin/couplevae (built when missing); PyTorch runs with /usr/bin/python3 ($PYTHON).
#
# Prints, per model, the validation NLL and training seconds of both at every K steps, the
# speed ratio at equal steps, and the time each took to reach the NLL both reach (the
# higher of the two final NLLs).
# The two draw different noise (initial weights, batches, dropout, samples): NLLs at equal
# steps agree to the runs' own spread, not exactly. Raw output is kept in a temporary folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/../shared/data/ptb"
STEPS=1000
VALID_EVERY=200
VALID_SENTENCES=500
THREADS=2
PYTHON="${PYTHON:-/usr/bin/python3}"

HELP_LINES=23
# shellcheck source=bench/args.sh
source "$ROOT/bench/args.sh"
MODELS="vae couple-vae"
shared=()  # the options bench/args.sh parses
while [[ $# -gt 0 ]]; do
  case "$1" in
    --valid-every) need_value "$@"; posint "$1" "$2" 1; VALID_EVERY="$2"; shift 2 ;;
    --valid-sentences) need_value "$@"; posint "$1" "$2" 1; VALID_SENTENCES="$2"; shift 2 ;;
    *) shared+=("$1"); shift ;;
  esac
done
parse_args "${shared[@]}"
check_data
((STEPS % VALID_EVERY == 0)) || die "--steps ($STEPS) must be a multiple of --valid-every ($VALID_EVERY)"
[[ -x "$PYTHON" ]] || die "$PYTHON not found (PyTorch side; set PYTHON=...)"

built CLI build couplevae_cli couplevae

KL_START=$((STEPS / 30))
KL_ANNEAL=$(((2 * STEPS + 1) / 3))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/couplevae-ttq.XXXXXX")"
echo "machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//')"
echo "runs: $STEPS steps, KL from step $KL_START over $KL_ANNEAL, validation every $VALID_EVERY steps on" \
     "$VALID_SENTENCES sentences x 10 samples, $THREADS threads each; raw output in $WORK"

# stamp: each line of standard input with the seconds since the epoch in front
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

for model in $MODELS; do
  echo "== $model: couplevae" >&2
  OMP_NUM_THREADS="$THREADS" "$CLI" train --model "$model" --data "$DATA" --steps "$STEPS" --seed 0 \
    --valid-every "$VALID_EVERY" --valid-max-sentences "$VALID_SENTENCES" --kl-start "$KL_START" \
    --kl-anneal-steps "$KL_ANNEAL" --log-every "$VALID_EVERY" 2>&1 >/dev/null | stamp | tee "$WORK/$model.cpp" >&2
  echo "== $model: PyTorch" >&2
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$THREADS" "$PYTHON" "$ROOT/bench/torch_ref.py" train \
    --model "$model" --data "$DATA" --steps "$STEPS" --seed 0 --threads "$THREADS" --valid-every "$VALID_EVERY" \
    --valid-max-sentences "$VALID_SENTENCES" --valid-samples 10 --kl-start "$KL_START" \
    --kl-anneal-steps "$KL_ANNEAL" --log-every "$VALID_EVERY" --eval-max-sentences 1 --eval-samples 1 \
    | tee "$WORK/$model.torch" >&2
done

"$PYTHON" - "$WORK" $MODELS <<'PY'
import re
import sys

work, models = sys.argv[1], sys.argv[2:]
valid = re.compile(r"valid step (\d+): nll (\S+) .*?\((\S+) s\)")


def ours(path):
    """{step: (training seconds, nll)} from the tool's timestamped stderr."""
    t0, spent, out = None, 0.0, {}
    for line in open(path):
        stamp, _, text = line.rstrip("\n").partition(" ")
        if text.startswith("parameters:"):
            t0 = float(stamp)  # training starts after this line
        m = valid.search(text)
        if m:
            spent += float(m.group(3))
            out[int(m.group(1))] = (float(stamp) - t0 - spent, float(m.group(2)))
    return out


def theirs(path):
    out = {}
    for line in open(path):
        m = valid.search(line)
        if m:
            out[int(m.group(1))] = (float(line.rsplit("train_s", 1)[1]), float(m.group(2)))
    return out


def first_at_most(runs, nll):
    for step in sorted(runs):
        if runs[step][1] <= nll:
            return step
    return None


for model in models:
    a, b = ours("%s/%s.cpp" % (work, model)), theirs("%s/%s.torch" % (work, model))
    steps = sorted(set(a) & set(b))
    if not steps:
        print("\n%s: no validation from both (see the raw output)" % model)
        continue
    print("\n### %s\n" % model)
    print("| step | couplevae s | couplevae NLL | torch s | torch NLL | speed (torch s / couplevae s) |")
    print("|---|---|---|---|---|---|")
    for s in steps:
        print("| %d | %.1f | %.3f | %.1f | %.3f | %.2fx |" % (s, a[s][0], a[s][1], b[s][0], b[s][1], b[s][0] / a[s][0]))
    # the NLL both runs reach: the higher of the two final ones
    target = max(a[steps[-1]][1], b[steps[-1]][1])
    ra, rb = first_at_most(a, target), first_at_most(b, target)
    print("\nTime to validation NLL %.3f (the higher of the two final NLLs): couplevae %.1f s (step %d), "
          "PyTorch %.1f s (step %d): %.2fx." % (target, a[ra][0], ra, b[rb][0], rb, b[rb][0] / a[ra][0]))
PY
