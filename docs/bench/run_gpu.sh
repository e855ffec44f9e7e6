#!/usr/bin/env bash
# The GPU benchmark, one command for a lent H100/H200: writes its tables under
# docs/bench/gpu_*.{md,json,png} and docs/bench/gpu_checks.txt (the log, naming the device).
# Run it first whenever a session has a GPU, then commit what it wrote. Nothing here runs in CI.
#
# The GPU image holds torch, torchvision and timm but not MMEngine, smp, albumentations, effdet or
# pycocotools, and reaches no package index: fetch their wheels here first, then carry them.
#
#   bash docs/bench/gpu_wheels.sh                                   # here: fills .wheels/
#   device run, carry [".wheels", "data/mni-tissue"], timeout_s 600:
#       PACK_DIR=$OUT bash docs/bench/run_gpu.sh                     # tables come back packed
#   bash docs/bench/run_gpu.sh --dry-run    # here, on the CPU: every step at toy sizes (~6 min)
#
# Steps run in order of what the goals need (B0 and B4 bf16 + channels_last against timm first)
# under one deadline (GPU_DEADLINE_S, default 480 s): a step that would start after it is skipped
# and logged as such, so the command ends inside the device's 10-minute call. Each step may fail
# without stopping the others, and a candidate that fails leaves the rest of its table. PACK_DIR
# gets gpu_tables.tgz (every table so far) and gpu_checks.txt after each step (the device call
# returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
if ((DRY)); then
    OUT=${DRY_OUT:-/tmp/gpu_dry_run}; DEVICE=cpu; DEADLINE=${GPU_DEADLINE_S:-900}
    # argparse keeps the last value: these follow each step's own sizes and shrink them
    TOY=(--device cpu --dtype bfloat16 --batch 2 --resolution 64 --warmup 0 --steps 1 --rounds 1)
    TRAIN_ITERS=4
else
    OUT=docs/bench; DEVICE=cuda; DEADLINE=${GPU_DEADLINE_S:-480}; TOY=(); TRAIN_ITERS=200
fi
mkdir -p "$OUT"
CHECKS=$OUT/gpu_checks.txt
: > "$CHECKS"
pack() {  # into PACK_DIR after every step, so a call cut short still returns what was done
    [[ -n "${PACK_DIR:-}" ]] || return 0
    local tables
    tables=$(cd "$OUT" && ls gpu_*.md gpu_*.json gpu_*.png 2>/dev/null)
    [[ -n "$tables" ]] && tar czf "$PACK_DIR/gpu_tables.tgz" -C "$OUT" $tables
    cp "$CHECKS" "$PACK_DIR/"
}
trap pack EXIT

if compgen -G ".wheels/*.whl" > /dev/null; then  # what the GPU image lacks (gpu_wheels.sh)
    SITE=/tmp/effnet_gpu_site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .wheels/*.whl >> "$CHECKS" 2>&1 || echo "wheels: install FAILED" >> "$CHECKS"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, not installed there

"$PY" - >> "$CHECKS" 2>&1 <<'PY'
import torch
where = (f'{torch.cuda.get_device_name()} | CUDA {torch.version.cuda}'
         if torch.cuda.is_available() else 'no CUDA device: CPU dry run')
print('device:', where, '| torch', torch.__version__)
PY

run() {  # run NAME COMMAND...: a step that may fail without stopping the others
    local name=$1; shift
    local left=$((DEADLINE - SECONDS))
    if ((left < 20)); then
        echo "== $name: SKIPPED (deadline of $DEADLINE s reached)" | tee -a "$CHECKS"; return
    fi
    echo "== $name" | tee -a "$CHECKS"
    local start=$SECONDS
    # -k: a child that ignores the TERM is killed 10 s later, inside the deadline's margin
    if timeout -k 10 "$((left < 300 ? left : 300))" "$@" >> "$CHECKS" 2>&1; then
        echo "   ok ($((SECONDS - start)) s)" | tee -a "$CHECKS"
    else
        echo "   FAILED ($((SECONDS - start)) s)" | tee -a "$CHECKS"
    fi
    pack
}
# GPU timings vary little between rounds: one round of 10 steps per candidate keeps the starts
# (a fresh process each, CUDA context and cuDNN set-up) inside the deadline
B=("$PY" tools/benchmark.py --device "$DEVICE" --dtype bfloat16 --channels-last --warmup 3
   --steps 10 --rounds 1)

# 1. the goal: B0 and B4 backbones, bf16 autocast + channels_last, against timm and torchvision
#    at their native resolutions, with the element-wise operators' share of memory bandwidth
run "B0 backbones, 224 px, eager" "${B[@]}" --bandwidth --batch 64 --resolution 224 \
    ours:b0 ours:b0+me timm:b0 tv:b0 --baseline timm:b0 --out "$OUT/gpu_b0_eager" "${TOY[@]}"
run "B4 backbones, 380 px, eager" "${B[@]}" --bandwidth --batch 32 --resolution 380 \
    ours:b4 ours:b4+me timm:b4 tv:b4 --baseline timm:b4 --out "$OUT/gpu_b4_eager" "${TOY[@]}"
# 2. one short medical training run with AMP (the real mni-tissue slices when carried)
DATA=()
[[ -d data/mni-tissue ]] && DATA=(--data-root data/mni-tissue)
run "tools/train.py --amp (medical recipe, $TRAIN_ITERS iterations)" "$PY" tools/train.py \
    configs/unet_effb4_medical.py "${DATA[@]}" --amp --max-iters "$TRAIN_ITERS" \
    --work-dir /tmp/gpu_amp_run --cfg-options "train_cfg.val_interval=$((TRAIN_ITERS / 2))" \
    "default_hooks.checkpoint.interval=$TRAIN_ITERS"
# 3. the hardening checks: a one-rank NCCL process group, SyncBN under DDP equal to one process
if ((DRY)); then BACKEND=gloo; else BACKEND=nccl; fi
run "$BACKEND start-up, one rank" "$PY" -c "
import os, time, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29533', RANK='0', WORLD_SIZE='1')
cuda = torch.cuda.is_available()
start = time.perf_counter()
dist.init_process_group('$BACKEND', **(dict(device_id=torch.device('cuda:0')) if cuda else {}))
dist.all_reduce(torch.ones(1, device='cuda' if cuda else 'cpu'))
if cuda: torch.cuda.synchronize()
print(f'$BACKEND init + first all_reduce: {time.perf_counter() - start:.2f} s')
dist.destroy_process_group()"
run "SyncBN and DDP equality tests" "$PY" -m pytest -q -p no:randomly -p no:cacheprovider \
    tests/tasks/engine/test_ddp_syncbn.py tests/tasks/engine/test_ddp_batchnorm.py
# 4. the U-Nets, then compiled backbones (the compiler's first build of each graph is minutes)
run "B4 U-Nets, 256 px, eager" "${B[@]}" --batch 16 --resolution 256 \
    unet:b4 unet:b4+me unet_smp:b4 unet_timm:resnet50 --baseline unet_smp:b4 \
    --out "$OUT/gpu_unet_eager" "${TOY[@]}"
run "B0 backbones, 224 px, compiled" "${B[@]}" --compile --batch 64 --resolution 224 \
    ours:b0 ours:b0+mb50 timm:b0 --baseline timm:b0 --out "$OUT/gpu_b0_compiled" "${TOY[@]}"
run "B4 backbones, 380 px, compiled" "${B[@]}" --compile --batch 32 --resolution 380 \
    ours:b4 ours:b4+mb50 timm:b4 --baseline timm:b4 --out "$OUT/gpu_b4_compiled" "${TOY[@]}"
# 5. EfficientDet against effdet's
run "EfficientDet D0 / effdet D0, 512 px, eager" "${B[@]}" --batch 16 --resolution 512 \
    det:d0 det:d0+me effdet:d0 --baseline effdet:d0 --out "$OUT/gpu_efficientdet_d0" "${TOY[@]}"

echo "tables: $(cd "$OUT" && ls gpu_*.md 2>/dev/null | tr '\n' ' ') ($SECONDS s in all)" \
    | tee -a "$CHECKS"
