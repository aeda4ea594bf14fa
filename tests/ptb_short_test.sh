#!/usr/bin/env bash
# scripts/ptb_short.sh end to end on the synthetic corpus (the script that makes README's
# "A shortened PTB run"): a lambda_c sweep trains the uncoupled model once and the Coupled
# model once per value, evaluates every run on the test split and writes the report with a
# row per run; a run that fails is named (exit 1) and the others are still reported; bad
# options exit 2 with one line; a missing corpus is skipped, exit 0.
# Usage: ptb_short_test.sh PATH/TO/couplevae WORKDIR
set -u
bin=$1
w=$2
script=$(cd "$(dirname "$0")/.." && pwd)/scripts/ptb_short.sh
rm -rf "$w"
mkdir -p "$w"
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$bin" make-corpus --out "$w/corpus" --train-lines 600 >/dev/null || bad "make-corpus failed"
out=$(bash "$script" --bin "$bin" --data "$w/corpus" --steps 300 --models "vae couple-vae" --lambda-c "0.5 2" \
  --track-every 100 --train-args "--embed 32 --hidden 32 --latent 8" \
  --out "$w/runs" --parallel 2>&1)
rc=$?
[ "$rc" = 0 ] || bad "the sweep exited $rc: $(tail -n 5 <<<"$out")"
for run in vae couple-vae-lc0.5 couple-vae-lc2; do
  [ -f "$w/runs/$run/best.safetensors" ] || bad "$run: no best.safetensors"
  [ -f "$w/runs/$run/eval.json" ] || bad "$run: no eval.json"
  grep -q '"nll"' "$w/runs/$run/eval.json" 2>/dev/null || bad "$run: eval.json has no nll"
  # --train-args reached the run: embed 32, hidden 32, latent 8 make tens of thousands of
  # parameters (the PTB preset's sizes, millions).
  n=$(sed -n 's/^parameters: \([0-9]*\)$/\1/p' "$w/runs/$run.log" 2>/dev/null)
  [ -n "$n" ] && [ "$n" -lt 200000 ] || bad "$run: --train-args not applied (parameters: '$n')"
  # --track-every 100: the dynamics at steps 100, 200 and 300 (not only at validation, every 60).
  steps=$(cut -d, -f1 "$w/runs/$run/dynamics.csv" 2>/dev/null | tr '\n' ' ')
  [ "$steps" = "step 100 200 300 " ] || bad "$run: dynamics.csv steps '$steps', expected 'step 100 200 300 '"
done
for extra in vae-lc0.5 vae-lc2 couple-vae; do
  [ ! -e "$w/runs/$extra" ] || bad "$extra should not exist (one run per uncoupled model, one per lambda_c)"
done
report=$w/runs/report.md
grep -q '^| VAE |' "$report" 2>/dev/null || bad "report: no VAE row"
grep -q '^| Couple-VAE (λc = 0.5) |' "$report" 2>/dev/null || bad "report: no Couple-VAE (λc = 0.5) row"
grep -q '^| Couple-VAE (λc = 2) |' "$report" 2>/dev/null || bad "report: no Couple-VAE (λc = 2) row"

# A run that fails (here an unknown model) is named, exit 1; the others are still evaluated
# and reported.
out=$(bash "$script" --bin "$bin" --data "$w/corpus" --steps 300 --models "vae nope-vae" \
  --train-args "--embed 32 --hidden 32 --latent 8" --out "$w/partial" --parallel 2>&1)
rc=$?
[ "$rc" = 1 ] || bad "a failing run: exit $rc, expected 1"
grep -q "nope-vae failed: see $w/partial/nope-vae.log" <<<"$out" || bad "a failing run is not named: $(tail -n 3 <<<"$out")"
[ -f "$w/partial/vae/eval.json" ] || bad "a failing run stopped the evaluation of the others"
grep -q '^| VAE |' "$w/partial/report.md" 2>/dev/null || bad "a failing run stopped the report of the others"

# expect NAME PATTERN ARGS...: exit 2 and one line matching PATTERN.
expect() {
  local name=$1 pattern=$2
  shift 2
  local said rc
  said=$(bash "$script" --bin "$bin" --data "$w/corpus" --out "$w/bad" "$@" 2>&1)
  rc=$?
  if [ "$rc" != 2 ]; then bad "$name: exit $rc, expected 2 ($said)"; return; fi
  grep -qE -- "$pattern" <<<"$said" || bad "$name: said '$said', expected /$pattern/"
  [ "$(grep -c . <<<"$said")" = 1 ] || bad "$name: more than one line: $said"
}
expect "bad lambda" "--lambda-c takes non-negative numbers \(got 'x'\)" --lambda-c "1 x"
expect "few steps" "--steps must be a number >= 300 \(got '10'\)" --steps 10
expect "bad track-every" "--track-every must be a number >= 1 \(got '0'\)" --track-every 0
expect "unknown option" "unknown option '--nope'" --nope
[ ! -e "$w/bad" ] || bad "a refused call wrote $w/bad"
said=$(bash "$script" --bin "$bin" --data "$w/nowhere" 2>&1)
rc=$?
[ "$rc" = 0 ] && grep -q "skipped: PTB is not at" <<<"$said" || bad "missing corpus: exit $rc, said '$said'"

if [ "$fails" != 0 ]; then
  echo "ptb_short_test: $fails failure(s)"
  exit 1
fi
echo "ptb_short_test: all passed"
