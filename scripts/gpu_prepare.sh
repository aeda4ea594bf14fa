#!/usr/bin/env bash
# scripts/gpu_prepare.sh: on this (Debian) machine, fill .gpu-carry/ (git-ignored) with what the
# GPU machine lacks, for the device tool's `carry`: the Debian header packages the library
# and its tests build against (apt-get download + dpkg -x, no install) and the PTB files.
# With --prebuilt it also builds the cuda test program, the tool and the GPU benchmark here
# (build-dev/: sm_90 only, no -march=native, so they run on the GPU machine's processor) and
# copies them to .gpu-carry/bin, so that no device time goes to compiling.
#
#   bash scripts/gpu_prepare.sh [--prebuilt] [PTB_DIR]      (default ../shared/data/ptb)
#
# Then, with the device tool: run(command="bash scripts/gpu_check.sh --one-call",
# carry=[".gpu-carry"], timeout_s=600).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREBUILT=0
if [[ "${1:-}" == "--prebuilt" ]]; then PREBUILT=1; shift; fi
PTB="${1:-$ROOT/../shared/data/ptb}"
OUT="$ROOT/.gpu-carry"
packages=(libeigen3-dev libxtensor-dev xtl-dev doctest-dev libcli11-dev nlohmann-json3-dev)

rm -rf "$OUT"
mkdir -p "$OUT/ptb"
if ((PREBUILT)); then
  export PATH="/usr/local/cuda/bin:$PATH"
  cmake -S "$ROOT" -B "$ROOT/build-dev" -DCMAKE_BUILD_TYPE=Release -DCOUPLEVAE_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCOUPLEVAE_NATIVE=OFF -DCOUPLEVAE_BUILD_FUZZ=OFF \
    -DCOUPLEVAE_TESTS_O1=OFF >/dev/null
  cmake --build "$ROOT/build-dev" -j"$(nproc)" --target couplevae_cuda_tests couplevae_cli couplevae_bench_cuda
  mkdir -p "$OUT/bin"
  cp "$ROOT"/build-dev/bin/{couplevae_cuda_tests,couplevae,couplevae_bench_cuda} "$OUT/bin/"
  strip "$OUT"/bin/couplevae*
  # the tests' OpenMP runtime, in case the GPU machine's image has none (used last)
  mkdir -p "$OUT/lib" && cp "$(gcc -print-file-name=libgomp.so.1)" "$OUT/lib/"
  echo "$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD || echo +changes)" \
    >"$OUT/bin/REVISION"
  # What the binaries were built from: gpu_check.sh hashes the same files there and warns
  # when the tree it runs in is another one (binaries left from an earlier prepare).
  (cd "$ROOT" && git ls-files -- CMakeLists.txt cmake include examples tests bench >"$OUT/bin/SOURCES")
  (cd "$ROOT" && xargs -d '\n' sha1sum <"$OUT/bin/SOURCES" | sha1sum | cut -d' ' -f1) >"$OUT/bin/SOURCES.sha1"
else
  mkdir -p "$OUT/debs" "$OUT/root"
  (cd "$OUT/debs" && apt-get download "${packages[@]}")
  for deb in "$OUT"/debs/*.deb; do dpkg -x "$deb" "$OUT/root"; done
  rm -rf "$OUT/debs"
fi
if [[ -f "$PTB/train.txt" ]]; then
  cp "$PTB"/train.txt "$PTB"/valid.txt "$PTB"/test.txt "$OUT/ptb/"
else
  echo "gpu_prepare.sh: note: no PTB at $PTB; the GPU run will use the toy corpus" >&2
fi
du -sh "$OUT"
