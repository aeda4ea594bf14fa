#!/usr/bin/env bash
# A training run killed with SIGKILL at a random moment and resumed with --resume ends with
# the same final parameters (bit for bit, same thread count) as an uninterrupted run.
# Usage: kill_resume_test.sh PATH/TO/couplevae WORKDIR
set -u
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
export OMP_NUM_THREADS=2
"$bin" make-corpus --out "$work/toy" --seed 3 --train-lines 300 >/dev/null || { echo "FAIL: make-corpus"; exit 1; }
args=(--model couple-vae --data "$work/toy" --steps 60 --seed 4 --embed 16 --hidden 8 --latent 4
      --valid-every 5 --valid-max-sentences 20 --log-every 10)

"$bin" train "${args[@]}" --out "$work/full" >/dev/null 2>&1 || { echo "FAIL: uninterrupted run"; exit 1; }

# Start, wait for the first checkpoint, then kill at a random moment.
"$bin" train "${args[@]}" --out "$work/killed" >/dev/null 2>"$work/killed.err" &
pid=$!
for _ in $(seq 1 600); do [ -f "$work/killed/last.safetensors" ] && break; sleep 0.05; done
sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
killed_at=$(grep -o "step [0-9]*/60" "$work/killed.err" | tail -n 1)
echo "killed after: ${killed_at:-before the first progress line}"
# Resume until done (a resumed run may itself be killed in a real setting; here once).
"$bin" train "${args[@]}" --out "$work/killed" --resume "$work/killed/last.safetensors" >/dev/null 2>"$work/resume.err" \
  || { echo "FAIL: resume: $(cat "$work/resume.err")"; exit 1; }
if cmp -s "$work/full/last.safetensors" "$work/killed/last.safetensors"; then
  echo "1 passed, 0 failed"
else
  echo "FAIL: resumed run differs from the uninterrupted run"
  echo "0 passed, 1 failed"
  exit 1
fi
