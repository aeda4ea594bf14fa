#!/usr/bin/env bash
# bench/compare.sh: couplevae (C++, Eigen) against the PyTorch reference (bench/torch_ref.py)
# on the CPU, training steps and importance-sampled evaluation, for vae, couple-vae and the
# dilated-CNN decoder's cnn-vae and couple-cnn-vae (PTB preset: F = 256, dilations 1..16).
#
#   bench/compare.sh [--data DIR] [--steps N] [--warmup W] [--eval-sentences M]
#                    [--eval-samples S] [--rounds R] [--threads T] [--models LIST]
#
# Defaults: --data ../shared/data/ptb (relative to the repository root), --steps 20,
# --warmup 3, --eval-sentences 500, --eval-samples 100, --rounds 2, --threads 2,
# --models "vae couple-vae cnn-vae couple-cnn-vae" (any of these, comma or space separated).
# The benchmark binary is $BENCH, or build/bin/couplevae_bench (configured and built in
# build/ when missing). PyTorch runs with /usr/bin/python3 ($PYTHON overrides).
#
# Each measurement is its own process; C++ and PyTorch alternate, R rounds per model, and
# the best round of each is reported (max steps/s, min evaluation seconds). Both sides get
# OMP_NUM_THREADS=T (torch also --threads T). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
# removed from the PyTorch commands only: on this machine they slow OpenBLAS down.
# The raw JSON lines of every run are kept in a temporary log whose path is printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/../shared/data/ptb"
STEPS=20
WARMUP=3
EVAL_SENTENCES=500
EVAL_SAMPLES=100
ROUNDS=2
THREADS=2
PYTHON="${PYTHON:-/usr/bin/python3}"

HELP_LINES=19
# shellcheck source=bench/args.sh
source "$ROOT/bench/args.sh"
MODELS="$ALLOWED_MODELS"
parse_args "$@"
check_data
[[ -x "$PYTHON" ]] || die "$PYTHON not found (PyTorch side; set PYTHON=...)"
TORCH_REF="$ROOT/bench/torch_ref.py"

built BENCH build couplevae_bench couplevae_bench

LOG="$(mktemp "${TMPDIR:-/tmp}/couplevae-compare.XXXXXX")"
ERR="$(mktemp "${TMPDIR:-/tmp}/couplevae-compare-stderr.XXXXXX")"
trap 'rm -f "$ERR"' EXIT

# ---- machine ---------------------------------------------------------------------------
cpu_model="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//' || true)"
echo "machine: $(nproc) CPUs available (nproc), ${cpu_model:-unknown CPU}; $(uname -m)"
echo "threads: $THREADS per run (OMP_NUM_THREADS=$THREADS)"
for v in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do
  if [[ -n "${!v:-}" ]]; then echo "note: $v=${!v} is set here; unset for the PyTorch runs only"; fi
done
torch_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$THREADS")
"${torch_env[@]}" "$PYTHON" - <<'EOF' 2>/dev/null || echo "torch: (could not query the BLAS)"
import ctypes
import torch
info = "torch %s" % torch.__version__
blas = None
try:
    from threadpoolctl import threadpool_info
    for p in threadpool_info():
        if p.get("internal_api") == "openblas":
            blas = "OpenBLAS %s, core %s, %s threads" % (p.get("version"), p.get("architecture"),
                                                          p.get("num_threads"))
            break
except Exception:
    pass
if blas is None:
    libs = sorted({l.split()[-1] for l in open("/proc/self/maps")
                   if "openblas" in l.lower() and ".so" in l})
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            blas = "%s, core %s (%s)" % (lib.openblas_get_config().decode(),
                                         lib.openblas_get_corename().decode(), path)
            break
        except Exception:
            continue
if blas is None:
    cfg = [l.strip() for l in torch.__config__.show().splitlines() if "BLAS" in l]
    blas = "; ".join(cfg)[:300] or "unknown"
print("%s; BLAS: %s" % (info, blas))
EOF
echo "couplevae: $BENCH"
echo "data: $DATA; train $STEPS timed steps after $WARMUP warm-up; eval $EVAL_SENTENCES test sentences x $EVAL_SAMPLES samples; $ROUNDS rounds, best of each"
echo "models: $MODELS"
echo "raw results: $LOG"
echo

# run TAG MODEL CMD...: runs one measurement, appends {"tag","model", ...its JSON} to $LOG.
run() {
  local tag="$1" model="$2"; shift 2
  local out
  if ! out="$("$@" 2>"$ERR")"; then
    echo "compare.sh: $tag ($model) failed: $*" >&2
    tail -n 20 "$ERR" >&2
    exit 1
  fi
  local line
  line="$(printf '%s\n' "$out" | grep '^{' | tail -n 1)"
  [[ -n "$line" ]] || { echo "compare.sh: $tag ($model) printed no JSON line" >&2; printf '%s\n' "$out" >&2; exit 1; }
  printf '%s\n' "$line" | jq -c --arg tag "$tag" --arg model "$model" '. + {tag: $tag, model: $model}' >> "$LOG"
  printf '%s\n' "$line" | jq -r --arg tag "$tag" --arg model "$model" \
    'if .steps_per_s then "  \($tag) \($model): \(.steps_per_s * 1000 | round / 1000) steps/s"
     else "  \($tag) \($model): \(.seconds * 1000 | round / 1000) s" end' >&2
}

for model in $MODELS; do
  for ((r = 1; r <= ROUNDS; ++r)); do
    echo "# train $model, round $r/$ROUNDS" >&2
    run cpp-train "$model" env OMP_NUM_THREADS="$THREADS" "$BENCH" train --model "$model" --data "$DATA" \
      --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS"
    run torch-train "$model" "${torch_env[@]}" "$PYTHON" "$TORCH_REF" bench --model "$model" --data "$DATA" \
      --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS"
  done
done
for model in $MODELS; do
  for ((r = 1; r <= ROUNDS; ++r)); do
    echo "# eval $model, round $r/$ROUNDS" >&2
    run cpp-eval "$model" env OMP_NUM_THREADS="$THREADS" "$BENCH" eval --model "$model" --data "$DATA" \
      --samples "$EVAL_SAMPLES" --max-sentences "$EVAL_SENTENCES" --threads "$THREADS"
    run torch-eval "$model" "${torch_env[@]}" "$PYTHON" "$TORCH_REF" bench-eval --model "$model" --data "$DATA" \
      --samples "$EVAL_SAMPLES" --max-sentences "$EVAL_SENTENCES" --threads "$THREADS"
  done
done
echo >&2

# ---- tables ----------------------------------------------------------------------------
"$PYTHON" - "$LOG" $MODELS <<'EOF'
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
models = sys.argv[2:]

def pick(tag, model, key, best):
    rs = [r for r in rows if r["tag"] == tag and r["model"] == model]
    return best(rs, key=lambda r: r[key]) if rs else None

def table(header, lines):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"
    print(fmt(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for l in lines:
        print(fmt(l))

train = []
for m in models:
    c = pick("cpp-train", m, "steps_per_s", max)
    t = pick("torch-train", m, "steps_per_s", max)
    if not c or not t:
        continue
    train.append([m, "%.3f" % c["steps_per_s"], "%.3f" % t["steps_per_s"],
                  "%.2fx" % (c["steps_per_s"] / t["steps_per_s"]),
                  "%.4f" % c["s_per_step"], "%.4f" % c["floor_s_per_step"],
                  "%.2f" % (c["s_per_step"] / c["floor_s_per_step"]),
                  "%.0f / %.0f" % (c["peak_rss_mb"], t["peak_rss_mb"])])
print("Training (best of rounds; ratio = couplevae / torch steps/s, > 1 is faster)")
table(["model", "couplevae steps/s", "torch steps/s", "ratio", "couplevae s/step",
       "floor s/step", "step/floor", "peak MB (cpp/torch)"], train)
flops = [(m, pick("cpp-train", m, "steps_per_s", max)) for m in models]
flops = [(m, r) for m, r in flops if r]
if flops:
    print("floor s/step = GEMM FLOPs of a step (forward + backward; %s) / Eigen float GEMM rate "
          "measured in the same run (%s: %.1f GFLOP/s on M,K,N = %s)"
          % (", ".join("%s %.2f GFLOP" % (m, r["flops_per_step"] / 1e9) for m, r in flops), flops[0][0],
             flops[0][1]["gemm_gflops"], ",".join(map(str, flops[0][1].get("gemm_shape", [])))))
print()
ev = []
for m in models:
    c = pick("cpp-eval", m, "seconds", min)
    t = pick("torch-eval", m, "seconds", min)
    if not c or not t:
        continue
    ev.append([m, "%.2f" % c["seconds"], "%.2f" % t["seconds"], "%.2fx" % (t["seconds"] / c["seconds"]),
               "%.1f" % c["sentences_per_s"], "%.1f" % t["sentences_per_s"],
               "%.0f / %.0f" % (c["peak_rss_mb"], t["peak_rss_mb"])])
print("Evaluation (best of rounds; ratio = torch seconds / couplevae seconds, > 1 is faster)")
table(["model", "couplevae s", "torch s", "ratio", "couplevae sent/s", "torch sent/s",
       "peak MB (cpp/torch)"], ev)
EOF
