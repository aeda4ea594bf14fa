#!/usr/bin/env bash
# End-to-end checks of the couplevae command-line tool: a tiny train/eval run on the toy
# corpus, resume, and the one-line errors with exit code 2.
# Usage: cli_test.sh PATH/TO/couplevae WORKDIR
set -u
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_error CODE PATTERN -- ARGS...: exit code and a one-line message matching PATTERN.
expect_error() {
  local code=$1 pattern=$2
  shift 3
  local out rc
  out=$("$bin" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" != "$code" ]; then bad "'$*' exited $rc, expected $code ($out)"; return; fi
  if ! grep -qE -- "$pattern" <<<"$out"; then bad "'$*' said '$out', expected /$pattern/"; return; fi
  if [ "$(printf '%s\n' "$out" | grep -c .)" != 1 ]; then bad "'$*' printed more than one line: $out"; return; fi
  ok
}

# Every command's help exits 0 and shows the defaults.
for cmd in train eval report sample interpolate make-corpus; do
  help=$("$bin" "$cmd" --help 2>&1) && grep -q "^Options:" <<<"$help" && ok || bad "$cmd --help failed: $help"
done
"$bin" eval --help | grep -qE -- "--samples INT=100 " && ok || bad "eval --help does not show --samples' default"
"$bin" train --help | grep -qE -- "--embed INT .*ptb 200\)" && ok || bad "train --help does not show --embed's PTB default"
"$bin" make-corpus --out "$work/toy" --seed 1 --train-lines 200 >/dev/null || bad "make-corpus failed"
small=(--embed 16 --hidden 8 --latent 4 --valid-every 10 --log-every 5)
"$bin" train --model couple-vae --data "$work/toy" --steps 20 --seed 0 --out "$work/run" "${small[@]}" \
  >"$work/train.out" 2>"$work/train.err" || bad "train failed: $(cat "$work/train.err")"
[ -f "$work/run/last.safetensors" ] && [ -f "$work/run/best.safetensors" ] && ok || bad "train wrote no checkpoints"
grep -q "steps/s" "$work/train.err" && grep -q "ETA" "$work/train.err" && ok || bad "no progress line"
json=$("$bin" eval --checkpoint "$work/run/last.safetensors" --data "$work/toy" --samples 5 --json 2>/dev/null | tail -n 1)
for key in nll kl ppl rec rec_c sentences; do
  grep -q "\"$key\":" <<<"$json" && ok || bad "eval JSON lacks $key: $json"
done
# Resume 20 -> 25 continues from the checkpoint.
"$bin" train --model couple-vae --data "$work/toy" --steps 25 --seed 0 --out "$work/run" "${small[@]}" \
  --resume "$work/run/last.safetensors" >/dev/null 2>"$work/resume.err" && grep -q "resumed" "$work/resume.err" && ok \
  || bad "resume failed: $(cat "$work/resume.err")"

# Evaluation's batching: kept in the checkpoint, used by eval, overridden by its flags; each
# validation line ends with its seconds.
"$bin" train --model vae --data "$work/toy" --steps 10 --seed 0 --out "$work/evb" "${small[@]}" --eval-batch-size 3 \
  --eval-rows 12 >/dev/null 2>"$work/evb.err" || bad "train --eval-batch-size failed: $(cat "$work/evb.err")"
grep -qE "^valid step 10: nll .* \([0-9.]+ s\)" "$work/evb.err" && ok || bad "no seconds on the validation line: $(cat "$work/evb.err")"
nll_of() { "$bin" eval --checkpoint "$work/evb/last.safetensors" --data "$work/toy" --samples 3 --max-sentences 40 \
  --metrics nll --json "$@" 2>/dev/null | tail -n 1 | sed -nE 's/.*"nll":([^,}]*).*/\1/p'; }
own=$(nll_of)
[ -n "$own" ] && [ "$own" = "$(nll_of --eval-batch-size 3 --eval-rows 12)" ] && ok \
  || bad "eval did not use the checkpoint's batching: $own vs $(nll_of --eval-batch-size 3 --eval-rows 12)"
[ "$own" != "$(nll_of --eval-batch-size 32 --eval-rows 256)" ] && ok || bad "eval --eval-batch-size changed nothing: $own"
expect_error 2 "eval_batch_size must be >= 0" -- train --model vae --data "$work/toy" --eval-batch-size -1
expect_error 2 "eval_rows must be positive" -- train --model vae --data "$work/toy" --eval-rows 0
expect_error 2 "eval-batch-size must be >= 1" -- eval --checkpoint "$work/evb/last.safetensors" --data "$work/toy" \
  --eval-batch-size -2

# Generation: prior samples (greedy and at a temperature, reproducible by seed) and the
# 7-point interpolation, which names the words it reads as <unk>.
ckpt="$work/run/last.safetensors"
[ "$("$bin" sample --checkpoint "$ckpt" --n 40 --max-len 12 2>/dev/null | grep -c '')" = 40 ] && ok \
  || bad "sample --n 40 did not print 40 lines"
s1=$("$bin" sample --checkpoint "$ckpt" --n 5 --temperature 1 --seed 3 2>/dev/null)
s2=$("$bin" sample --checkpoint "$ckpt" --n 5 --temperature 1 --seed 3 2>/dev/null)
s3=$("$bin" sample --checkpoint "$ckpt" --n 5 --temperature 1 --seed 4 2>/dev/null)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && ok || bad "sample with one seed differs between runs"
[ "$s1" != "$s3" ] && ok || bad "sample with seeds 3 and 4 printed the same lines: $s1"
interp=$("$bin" interpolate --checkpoint "$ckpt" --a "the cat" --b "a dog zzzq" 2>"$work/interp.err")
[ "$(grep -c '' <<<"$interp")" = 7 ] && ok || bad "interpolate did not print 7 lines: $interp"
grep -q "1 of 3 words are not in the vocabulary and read as <unk>: zzzq" "$work/interp.err" && ok \
  || bad "interpolate did not name the unknown word: $(cat "$work/interp.err")"
expect_error 2 "--n must be >= 1" -- sample --checkpoint "$ckpt" --n 0
expect_error 2 "temperature must be >= 0" -- sample --checkpoint "$ckpt" --temperature -1
expect_error 2 "non-empty" -- interpolate --checkpoint "$ckpt" --a "" --b "a dog"
"$bin" train --model lm --data "$work/toy" --steps 2 --seed 0 --out "$work/lm" "${small[@]}" >/dev/null 2>&1 \
  || bad "train lm failed"
[ "$("$bin" sample --checkpoint "$work/lm/last.safetensors" --n 3 2>/dev/null | grep -c '')" = 3 ] && ok \
  || bad "sample from the GRU-LM did not print 3 lines"
expect_error 2 "'lm' has no latent space" -- interpolate --checkpoint "$work/lm/last.safetensors" --a "the cat" --b "a dog"

# Training dynamics (--track-every), eval --json-out, and the report.
"$bin" train --model vae --data "$work/toy" --steps 10 --seed 0 --out "$work/dyn" "${small[@]}" --track-every 5 \
  --track-sentences 8 >/dev/null 2>"$work/dyn.err" || bad "train --track-every failed: $(cat "$work/dyn.err")"
[ "$(head -n 1 "$work/dyn/dynamics.csv")" = "step,grad_rec,grad_reg,grad_h,grad_rec_sq,grad_reg_sq,grad_h_sq" ] && ok \
  || bad "dynamics.csv header: $(head -n 1 "$work/dyn/dynamics.csv")"
[ "$(tail -n +2 "$work/dyn/dynamics.csv" | cut -d, -f1 | tr '\n' ' ')" = "5 10 " ] && ok || bad "dynamics.csv steps"
head -c 6 "$work/dyn/dynamics.npy" | grep -q NUMPY && ok || bad "dynamics.npy is not a .npy file"
"$bin" eval --checkpoint "$work/run/best.safetensors" --data "$work/toy" --samples 2 --max-sentences 8 --metrics nll,grad \
  --json-out "$work/run/eval.json" >/dev/null 2>&1 && grep -q '"nll"' "$work/run/eval.json" \
  && grep -q '"grad_rec_sum_sq"' "$work/run/eval.json" && ok || bad "eval --json-out wrote no eval.json"
"$bin" report --runs "$work/run" "$work/dyn" --out "$work/report.md" >"$work/report.out" 2>&1 \
  && grep -q "Table 4" "$work/report.md" && grep -q "| Couple-VAE |" "$work/report.md" \
  && grep -q "<polyline" "$work/report.svg" && grep -q "README .*dynamics.npy" "$work/report.out" && ok \
  || bad "report: $(cat "$work/report.out")"
expect_error 2 "no checkpoint" -- report --runs "$work/run" "$work/toy"
expect_error 2 "track-every must be >= 0" -- train --model vae --data "$work/toy" --track-every -1
expect_error 2 "json-out .*folder does not exist" -- eval --checkpoint "$work/run/last.safetensors" --data "$work/toy" \
  --json-out "$work/nowhere/eval.json"

expect_error 2 "unknown model 'nope'" -- train --model nope --data "$work/toy"
expect_error 2 "--frobnicate" -- train --model vae --data "$work/toy" --frobnicate
expect_error 2 "steps must be >= 1" -- train --model vae --data "$work/toy" --steps 0
expect_error 2 "already holds a run" -- train --model vae --data "$work/toy" --steps 2 --out "$work/run"
expect_error 2 "nowhere.*(cannot open|missing|does not exist)" -- train --model vae --data "$work/nowhere" --steps 2
expect_error 2 "preset 'mars'" -- train --model vae --data "$work/toy" --preset mars
expect_error 2 "checkpoint .*(cannot open|No such)" -- eval --checkpoint "$work/none.safetensors" --data "$work/toy"
expect_error 2 "unknown metric 'bleu9'" -- eval --checkpoint "$work/run/last.safetensors" --data "$work/toy" --metrics bleu9
expect_error 2 "samples must be >= 1" -- eval --checkpoint "$work/run/last.safetensors" --data "$work/toy" --samples 0
expect_error 2 "required|subcommand" --
head -c 100 "$work/run/last.safetensors" >"$work/trunc.safetensors"
expect_error 2 "checkpoint .*trunc.safetensors" -- eval --checkpoint "$work/trunc.safetensors" --data "$work/toy"

# Lagging-VAE: the aggressive phase runs, logs its epoch-end MI, and the run evaluates.
"$bin" train --model couple-lagging-vae --data "$work/toy" --steps 10 --seed 0 --out "$work/lag" "${small[@]}" \
  --batch-size 64 >/dev/null 2>"$work/lag.err" && grep -q "encoder updates/step" "$work/lag.err" \
  && grep -q "aggressive: epoch end at step 4, valid MI" "$work/lag.err" && ok \
  || bad "train couple-lagging-vae: $(cat "$work/lag.err")"
"$bin" eval --checkpoint "$work/lag/last.safetensors" --data "$work/toy" --samples 2 --metrics nll,mi --max-sentences 20 \
  --json 2>/dev/null | tail -n 1 | grep -q '"mi":' && ok || bad "eval of a couple-lagging-vae run"
# SA-VAE: trains (SVI inside every step) and evaluates NLL with the refined posterior; the
# encoder-based analyses are left out for it.
"$bin" train --model sa-vae --data "$work/toy" --steps 4 --seed 0 --out "$work/sa" "${small[@]}" \
  >/dev/null 2>"$work/sa.err" || bad "train sa-vae: $(cat "$work/sa.err")"
json=$("$bin" eval --checkpoint "$work/sa/last.safetensors" --data "$work/toy" --samples 2 --max-sentences 20 \
  --dist-samples 20 --json 2>/dev/null | tail -n 1)
grep -q '"nll":' <<<"$json" && grep -q '"dist1":' <<<"$json" && ! grep -q '"mi":' <<<"$json" && ok \
  || bad "eval of an sa-vae run: $json"
expect_error 2 "'dae' cannot train aggressively" -- train --model dae --data "$work/toy" --steps 2 --aggressive

echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
