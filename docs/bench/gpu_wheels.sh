#!/usr/bin/env bash
# Fetches, on a networked machine, the wheels that docs/bench/run_gpu.sh needs and the lent GPU
# machines' image lacks (it holds torch, torchvision, timm, numpy, scipy, opencv, matplotlib,
# safetensors, huggingface-hub, pytest, ninja; nothing can be fetched there). They land in .wheels/
# (ignored by git); the device call carries that folder and run_gpu.sh installs it first.
# Versions: those this project's CI tests with; Python 3.12 (the GPU image's).
#
#   bash docs/bench/gpu_wheels.sh        # here, before the device call
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEST=.wheels
grep -qx "/$DEST/" .git/info/exclude 2>/dev/null || echo "/$DEST/" >> .git/info/exclude
rm -rf "$DEST" && mkdir "$DEST"
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" \
    mmengine-lite==0.10.7 addict==2.4.0 yapf==0.43.0 termcolor==3.3.0 platformdirs==4.14.9 \
    segmentation-models-pytorch==0.6.0 \
    albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic-core==2.50.5 \
    annotated-types==0.8.0 typing-inspection==0.4.5 stringzilla==5.3.2 simsimd==6.5.16 \
    pycocotools==2.0.11 nibabel==5.4.2 effdet==0.4.1 omegaconf==2.4.0 \
    typing-extensions==4.16.0  # pydantic needs >= 4.16; the image's version is not known
ls "$DEST"
du -sh "$DEST"
