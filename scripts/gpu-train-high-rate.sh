#!/usr/bin/env bash
# Train the high-rate hyperprior (CompressAI's quality 8, λ 0.18) on a GPU for a bounded time, larger than
# the CPU zoo's (N=128/M=192 by default), resumably. Two steps:
#
#   here (network, the project's .venv):   scripts/gpu-train-high-rate.sh prepare
#       writes .gpu/photos (the training photos: mate-backgrounds + package photos, never the held-out set)
#       and .gpu/wheels (compressai and pytorch-msssim for the GPU machine's Python, which has torch but
#       neither of them); .gpu is git-ignored, so name `.gpu` in the device tool's `carry`.
#   on the GPU machine (no network):        scripts/gpu-train-high-rate.sh train [MINUTES]
#       installs the wheels into /tmp/site, trains (resuming from .gpu/run if a previous call left a
#       checkpoint there), stops after MINUTES (default 8) and copies the checkpoint and an fp16 export
#       into $OUT (or .gpu/out). Bring them back into .gpu/run to resume, and export with
#       `robustnic export .gpu/run/last.pth.tar -o model.pt`.
# Settings through the environment: N, M, LMBDA, STEPS, BATCH, PATCH, LR, PYVER (GPU machine's Python),
# DEVICE and PYTHON (a CPU dry run here: DEVICE=cpu PYTHON=.venv/bin/python N=8 M=16 STEPS=2 PATCH=64 ... train 1).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-128} M=${M:-192} LMBDA=${LMBDA:-0.18} STEPS=${STEPS:-200000} BATCH=${BATCH:-16} PATCH=${PATCH:-256}
LR=${LR:-0.0001} PYVER=${PYVER:-3.12} DEVICE=${DEVICE:-cuda} PYTHON=${PYTHON:-python3}

case "${1:-}" in
prepare)
    mkdir -p .gpu/photos .gpu/wheels
    .venv/bin/python - <<'PY'
import shutil
from pathlib import Path
from robustnic.data.photos import training_photo_paths
paths = training_photo_paths()
for p in paths:
    shutil.copy(p, Path(".gpu/photos") / f"{p.parent.name}-{p.name}")
print(f"{len(paths)} training photos in .gpu/photos")
PY
    platforms=()
    for p in manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${platforms[@]}" -d .gpu/wheels "compressai==1.2.8" "pytorch-msssim==1.0.0"
    du -sh .gpu
    ;;
train)
    minutes=${2:-8}
    out=${OUT:-.gpu/out}
    mkdir -p "$out" .gpu/run
    if ! "$PYTHON" -c "import compressai, pytorch_msssim" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
    fi
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
    "$PYTHON" -m robustnic.cli.main train --device "$DEVICE" --arch bmshj2018-hyperprior --N "$N" --M "$M" --metric mse \
        --lmbda "$LMBDA" --steps "$STEPS" --batch-size "$BATCH" --patch-size "$PATCH" --lr "$LR" \
        --lr-drop 0.8:0.3 --lr-drop 0.95:0.3 --images .gpu/photos --val-every 5000 --checkpoint-every 500 \
        --time-limit "$minutes" --no-progress --out .gpu/run
    cp .gpu/run/last.pth.tar "$out/last.pth.tar"
    "$PYTHON" -m robustnic.cli.main export .gpu/run/last.pth.tar -o "$out/hyperprior-q8-N$N-M$M.pt"
    ;;
*)
    sed -n '2,15p' "$0"; exit 2 ;;
esac
