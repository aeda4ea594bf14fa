#!/usr/bin/env bash
# The tool on the cuda backend, end to end (ctest cuda.cli; needs a GPU, else exit 77):
#   train couple-vae and vmf-vae with --backend cuda on the toy corpus, couple-vae also with
#   CUDA Graphs of whole steps (COUPLEVAE_CUDA_GRAPHS=1); evaluate each
#   checkpoint with --backend cuda and --backend cpu (same seed, so the same samples):
#   NLL, KL and rec_c must agree to 1e-3 relative; resume the cuda run on the cpu; sample
#   and interpolate on the GPU.
# Usage: cli_cuda_test.sh PATH/TO/couplevae WORKDIR
set -u
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$bin" make-corpus --out "$work/toy" --seed 2 --train-lines 300 >/dev/null || { echo "make-corpus failed"; exit 1; }
small=(--embed 16 --hidden 8 --latent 4 --valid-every 20 --log-every 0)
if ! "$bin" train --backend cuda --model couple-vae --data "$work/toy" --steps 40 --out "$work/cvae" "${small[@]}" \
    >/dev/null 2>"$work/cvae.err"; then
  if grep -qE "needs a CUDA device|built without the cuda backend" "$work/cvae.err"; then
    echo "skipped: no CUDA device ($(head -c 200 "$work/cvae.err"))"
    exit 77
  fi
  echo "FAIL: cuda training: $(cat "$work/cvae.err")"
  exit 1
fi
ok
"$bin" train --backend cuda --model vmf-vae --data "$work/toy" --steps 40 --out "$work/vmf" "${small[@]}" \
  >/dev/null 2>"$work/vmf.err" && ok || bad "vmf-vae cuda training: $(cat "$work/vmf.err")"

# Whole steps as CUDA Graphs (COUPLEVAE_CUDA_GRAPHS=1, padded batches): the run finishes,
# with validations (eager, they allocate and so invalidate the graphs) in between.
COUPLEVAE_CUDA_GRAPHS=1 "$bin" train --backend cuda --model couple-vae --data "$work/toy" --steps 80 \
  --out "$work/graphs" "${small[@]}" >/dev/null 2>"$work/graphs.err" && ok \
  || bad "couple-vae cuda training with CUDA Graphs: $(cat "$work/graphs.err")"

# same_json KEY A B: |A[KEY] - B[KEY]| <= 1e-3 |B[KEY]| (+1e-6)
close() {
  python3 -c "
import json, sys
a, b = json.loads(sys.argv[2]), json.loads(sys.argv[3])
k = sys.argv[1]
sys.exit(0 if abs(a[k] - b[k]) <= 1e-3 * abs(b[k]) + 1e-6 else 1)" "$@"
}
for run in cvae vmf graphs; do
  ck="$work/$run/last.safetensors"
  g=$("$bin" eval --backend cuda --checkpoint "$ck" --data "$work/toy" --samples 20 --metrics nll --json 2>/dev/null | tail -n 1)
  c=$("$bin" eval --backend cpu --checkpoint "$ck" --data "$work/toy" --samples 20 --metrics nll --json 2>/dev/null | tail -n 1)
  for key in nll kl rec; do
    close "$key" "$g" "$c" && ok || bad "$run eval $key differs: cuda $g, cpu $c"
  done
done
"$bin" train --backend cpu --model couple-vae --data "$work/toy" --steps 50 --out "$work/cvae" "${small[@]}" \
  --resume "$work/cvae/last.safetensors" >/dev/null 2>"$work/resume.err" && ok \
  || bad "resuming the cuda run on the cpu: $(cat "$work/resume.err")"
[ "$("$bin" sample --backend cuda --checkpoint "$work/cvae/last.safetensors" --n 5 2>/dev/null | grep -c .)" = 5 ] \
  && ok || bad "sample --backend cuda did not print 5 lines"
[ "$("$bin" interpolate --backend cuda --checkpoint "$work/cvae/last.safetensors" --a "the cat" --b "a dog" 2>/dev/null \
  | grep -c .)" = 7 ] && ok || bad "interpolate --backend cuda did not print 7 lines"
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
