#!/usr/bin/env bash
# scripts/gpu_prepare.sh: on this (Debian) machine, fill .gpu-carry/ (git-ignored) with what the
# GPU machine lacks, for the device tool's `carry`: the Debian header packages the library
# and its tests build against (apt-get download + dpkg -x, no install) and the PTB files.
#
#   bash scripts/gpu_prepare.sh [PTB_DIR]      (default ../shared/data/ptb)
#
# Then, with the device tool: run(command="bash scripts/gpu_check.sh", carry=[".gpu-carry"]).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PTB="${1:-$ROOT/../shared/data/ptb}"
OUT="$ROOT/.gpu-carry"
packages=(libeigen3-dev libxtensor-dev xtl-dev doctest-dev libcli11-dev nlohmann-json3-dev)

rm -rf "$OUT"
mkdir -p "$OUT/debs" "$OUT/root" "$OUT/ptb"
(cd "$OUT/debs" && apt-get download "${packages[@]}")
for deb in "$OUT"/debs/*.deb; do dpkg -x "$deb" "$OUT/root"; done
rm -rf "$OUT/debs"
if [[ -f "$PTB/train.txt" ]]; then
  cp "$PTB"/train.txt "$PTB"/valid.txt "$PTB"/test.txt "$OUT/ptb/"
else
  echo "gpu_prepare.sh: note: no PTB at $PTB; the GPU run will use the toy corpus" >&2
fi
du -sh "$OUT"
