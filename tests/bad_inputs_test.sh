#!/usr/bin/env bash
# The catalogue of bad inputs: each must fail with exit code 2 and ONE line naming the file
# (and line or tensor) and the problem, writing or overwriting nothing; a few tolerated
# inputs (CRLF, over-long lines) must succeed.
# Usage: bad_inputs_test.sh PATH/TO/couplevae WORKDIR
set -u
bin=$1
w=$2
rm -rf "$w"
mkdir -p "$w"
passes=0
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect NAME PATTERN -- ARGS: exit 2, one line matching PATTERN, nothing new under $w/out*.
expect() {
  local name=$1 pattern=$2
  shift 3
  local before after out rc
  before=$(find "$w" -path "$w/out*" -type f -printf '%p %s %T@\n' 2>/dev/null | sort | md5sum)
  out=$("$bin" "$@" 2>&1 >/dev/null)
  rc=$?
  after=$(find "$w" -path "$w/out*" -type f -printf '%p %s %T@\n' 2>/dev/null | sort | md5sum)
  if [ "$rc" != 2 ]; then bad "$name: exit $rc, expected 2 ($out)"; return; fi
  if ! grep -qE -- "$pattern" <<<"$out"; then bad "$name: said '$out', expected /$pattern/"; return; fi
  if [ "$(printf '%s\n' "$out" | grep -c .)" != 1 ]; then bad "$name: more than one line: $out"; return; fi
  if [ "$before" != "$after" ]; then bad "$name: files under out* changed"; return; fi
  passes=$((passes + 1))
}
# dataset DIR: a small valid corpus
dataset() {
  mkdir -p "$1"
  printf 'the cat sat\na dog ran far\nthe dog sat\n' >"$1/train.txt"
  printf 'the cat ran\n' >"$1/valid.txt"
  printf 'a cat sat\n' >"$1/test.txt"
}
small=(--embed 8 --hidden 4 --latent 2 --steps 2 --valid-every 1)

dataset "$w/ok"
"$bin" train --model vae --data "$w/ok" "${small[@]}" --out "$w/out-run" >/dev/null 2>&1 || bad "setup run failed"
ck="$w/out-run/last.safetensors"

expect missing-dir "nowhere" -- train --model vae --data "$w/nowhere" "${small[@]}"
mkdir -p "$w/no-train"; printf 'a b\n' >"$w/no-train/valid.txt"; printf 'a b\n' >"$w/no-train/test.txt"
expect missing-train "no-train/train.txt" -- train --model vae --data "$w/no-train" "${small[@]}"
dataset "$w/empty"; : >"$w/empty/train.txt"
expect empty-train "empty/train.txt.*(empty|no sentences)" -- train --model vae --data "$w/empty" "${small[@]}"
dataset "$w/blank"; printf '\n  \n\t\n' >"$w/blank/train.txt"
expect blank-train "blank/train.txt.*(empty|no sentences)" -- train --model vae --data "$w/blank" "${small[@]}"
dataset "$w/binary"; printf 'the cat\nab\x00\x01cd\n' >"$w/binary/train.txt"
expect binary "binary/train.txt:2.*binary" -- train --model vae --data "$w/binary" "${small[@]}"
dataset "$w/utf8"; printf 'the cat\nthe \xc3\x28 dog\n' >"$w/utf8/train.txt"
expect utf8 "utf8/train.txt:2.*UTF-8" -- train --model vae --data "$w/utf8" "${small[@]}"
dataset "$w/unreadable"; chmod 000 "$w/unreadable/train.txt"
if [ "$(id -u)" != 0 ]; then expect unreadable "unreadable/train.txt" -- train --model vae --data "$w/unreadable" "${small[@]}"; fi
dataset "$w/dirfile"; rm "$w/dirfile/train.txt"; mkdir "$w/dirfile/train.txt"
expect train-is-dir "dirfile/train.txt" -- train --model vae --data "$w/dirfile" "${small[@]}"
dataset "$w/yelp"; printf 'x the cat\n3 a dog\n' >"$w/yelp/train.txt"
expect yelp-label "yelp/train.txt:1.*label" -- train --model vae --preset yelp --data "$w/yelp" "${small[@]}"
expect unknown-model "unknown model 'gpt'" -- train --model gpt --data "$w/ok" "${small[@]}"
expect model-newline "unknown model 'gp\\\\nt'" -- train --model $'gp\nt' --data "$w/ok" "${small[@]}"
expect flag-newline "x\\\\ny" -- train --model vae --data "$w/ok" $'--x\ny' 3
expect unknown-flag "--bogus" -- train --model vae --data "$w/ok" --bogus 3
expect steps-zero "steps" -- train --model vae --data "$w/ok" --steps 0
expect steps-negative "steps" -- train --model vae --data "$w/ok" --steps -5
expect steps-text "steps" -- train --model vae --data "$w/ok" --steps many
expect embed-negative "embed" -- train --model vae --data "$w/ok" "${small[@]}" --embed -3
expect lambda-negative "lambda" -- train --model couple-vae --data "$w/ok" "${small[@]}" --lambda-c -1
expect coupling-kind "coupling" -- train --model couple-vae --data "$w/ok" "${small[@]}" --coupling cosine
expect steps-huge "steps must be at most 1e9" -- train --model vae --data "$w/ok" --embed 8 --hidden 4 --steps 99999999999
expect hidden-huge "decoder GRU.*at most 1e9" -- train --model vae --data "$w/ok" --embed 8 --steps 2 --hidden 100000000
expect max-nonfinite "max-nonfinite must be >= 1" -- train --model vae --data "$w/ok" "${small[@]}" --max-nonfinite 0
expect log-every "log-every must be >= 0" -- train --model vae --data "$w/ok" "${small[@]}" --log-every -1
expect preset "preset 'mars'" -- train --model vae --data "$w/ok" --preset mars
expect out-used "out-run.*already holds a run" -- train --model vae --data "$w/ok" "${small[@]}" --out "$w/out-run"
printf 'x' >"$w/out-file"
expect out-not-dir "out-file.*not a folder" -- train --model vae --data "$w/ok" "${small[@]}" --out "$w/out-file"
expect out-unwritable "/proc/couplevae.*(cannot create|not writable)" -- train --model vae --data "$w/ok" "${small[@]}" --out /proc/couplevae
expect resume-other-model "it holds a 'vae' run" -- train --model couple-vae --data "$w/ok" "${small[@]}" --out "$w/out-run" --resume "$ck"
dataset "$w/other-vocab"; printf 'some other words here\nand more words\n' >"$w/other-vocab/train.txt"
expect resume-other-vocab "vocabulary" -- train --model vae --data "$w/other-vocab" "${small[@]}" --out "$w/out-run" --resume "$ck"
expect resume-missing "out-none.safetensors" -- train --model vae --data "$w/ok" "${small[@]}" --out "$w/out-run" --resume "$w/out-none.safetensors"

# Checkpoint corruptions (python3 rewrites the header).
corrupt() {  # corrupt NAME PYTHON-EXPR-ON(header dict h, data bytes d) -> writes $w/NAME.safetensors
  python3 - "$ck" "$w/$1.safetensors" "$2" <<'PY'
import json, struct, sys
src, dst, expr = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); d = raw[8 + n:]
names = [k for k in h if k != '__metadata__']
first = min(names, key=lambda k: h[k]['data_offsets'][0])
header_size = None
exec(expr)
hb = json.dumps(h).encode()
out = struct.pack('<Q', header_size if header_size is not None else len(hb)) + hb + d
open(dst, 'wb').write(out)
PY
}
head -c 200 "$ck" >"$w/trunc.safetensors"
expect truncated "trunc.safetensors" -- eval --checkpoint "$w/trunc.safetensors" --data "$w/ok"
corrupt hdr-big "header_size = 10**7"
expect header-beyond "hdr-big.safetensors" -- eval --checkpoint "$w/hdr-big.safetensors" --data "$w/ok"
corrupt overlap "second = sorted(names, key=lambda k: h[k]['data_offsets'][0])[1]; h[second]['data_offsets'] = [h[second]['data_offsets'][0] - 4, h[second]['data_offsets'][1] - 4]"
expect overlap "overlap.safetensors" -- eval --checkpoint "$w/overlap.safetensors" --data "$w/ok"
corrupt range "h[first]['data_offsets'][1] = len(d) + 400"
expect out-of-range "range.safetensors" -- eval --checkpoint "$w/range.safetensors" --data "$w/ok"
corrupt dtype "h[first]['dtype'] = 'F16'"
expect dtype "dtype.safetensors.*F16" -- eval --checkpoint "$w/dtype.safetensors" --data "$w/ok"
corrupt shape "s = h['embedding.weight']['shape']; h['embedding.weight']['shape'] = [s[1], s[0]]"
expect shape "shape.safetensors.*embedding.weight" -- eval --checkpoint "$w/shape.safetensors" --data "$w/ok"
corrupt version "h['__metadata__']['format_version'] = '99'"
expect version "version.safetensors.*version 99" -- eval --checkpoint "$w/version.safetensors" --data "$w/ok"
corrupt model "h['__metadata__']['model'] = 'no-such-model'"
expect other-model "unknown model 'no-such-model'" -- eval --checkpoint "$w/model.safetensors" --data "$w/ok"
corrupt vocab "h['__metadata__']['vocab'] = json.dumps(['<pad>', '<go>', '<eos>', '<unk>', 'x'])"
expect other-vocab-ckpt "vocab.safetensors.*vocabulary" -- eval --checkpoint "$w/vocab.safetensors" --data "$w/ok"
printf 'not a checkpoint at all' >"$w/junk.safetensors"
expect junk "junk.safetensors" -- eval --checkpoint "$w/junk.safetensors" --data "$w/ok"
expect eval-split "split" -- eval --checkpoint "$ck" --data "$w/ok" --split dev
expect eval-samples "samples" -- eval --checkpoint "$ck" --data "$w/ok" --samples 0
expect eval-metric "unknown metric 'rouge'" -- eval --checkpoint "$ck" --data "$w/ok" --metrics rouge
expect eval-no-split-file "no-train/train.txt" -- eval --checkpoint "$ck" --data "$w/no-train" --split train
expect backend-unknown "--backend: gpu not in" -- train --model vae --data "$w/ok" "${small[@]}" --backend gpu
# --backend cuda where it cannot be had (a build without the cuda backend, or no GPU): an
# error naming the reason, never a run on the CPU. Where a GPU is usable these would run.
if [ ! -e /dev/nvidia0 ]; then
  cuda_no="(built without the cuda backend|needs a CUDA device).*--backend cpu"
  expect backend-cuda-train "$cuda_no" -- train --model vae --data "$w/ok" "${small[@]}" --out "$w/out-cuda" --backend cuda
  expect backend-cuda-eval "$cuda_no" -- eval --checkpoint "$ck" --data "$w/ok" --backend cuda
  expect backend-cuda-sample "$cuda_no" -- sample --checkpoint "$ck" --backend cuda
fi

# Tolerated inputs.
dataset "$w/crlf"; printf 'the cat sat\r\na dog ran\r\n' >"$w/crlf/train.txt"
"$bin" train --model vae --data "$w/crlf" "${small[@]}" >/dev/null 2>&1 && passes=$((passes + 1)) || bad "CRLF corpus refused"
dataset "$w/long"; { printf 'the cat sat\n'; for i in $(seq 1 300); do printf 'w%d ' $((i % 7)); done; printf '\n'; } >"$w/long/train.txt"
"$bin" train --model vae --data "$w/long" "${small[@]}" >/dev/null 2>"$w/long.err" && [ "$(grep -c truncated "$w/long.err")" = 1 ] \
  && passes=$((passes + 1)) || bad "over-long line: expected success with one truncation warning ($(cat "$w/long.err"))"

chmod 644 "$w/unreadable/train.txt" 2>/dev/null
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
