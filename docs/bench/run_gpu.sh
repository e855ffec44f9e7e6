#!/usr/bin/env bash
# The GPU benchmark, one command for a lent H100/H200 (about 8 minutes): writes its tables under
# docs/bench/gpu_*.{md,json,png} and docs/bench/gpu_checks.txt, naming the device. Run it first
# whenever a session has a GPU, then commit what it wrote. Nothing here runs in CI.
#
#   bash docs/bench/run_gpu.sh            # on the GPU machine, from anywhere in the checkout
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/bench
CHECKS=$OUT/gpu_checks.txt
PY=${PYTHON:-python}
$PY - <<'PY' > "$CHECKS" 2>&1
import torch
print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)
PY
run() {  # run NAME COMMAND...: a step that may fail without stopping the others
    local name=$1; shift
    echo "== $name" | tee -a "$CHECKS"
    local start=$SECONDS
    if timeout 240 "$@" >> "$CHECKS" 2>&1; then echo "   ok ($((SECONDS - start)) s)" | tee -a "$CHECKS"
    else echo "   FAILED ($((SECONDS - start)) s)" | tee -a "$CHECKS"; fi
}
B="$PY tools/benchmark.py --device cuda --dtype bfloat16 --channels-last --warmup 3 --steps 10 --rounds 2"
# backbones and the U-Net at their native resolutions, eager then compiled (bf16 autocast,
# channels_last), against timm, torchvision, smp and a ResNet-50 U-Net; compiled with the
# memory budget 0.5 (+mb50) as the mode the CPU tables found fastest at half the memory
run "B0 backbones, 224 px, eager" $B --batch 64 --resolution 224 ours:b0 ours:b0+me timm:b0 tv:b0 --baseline timm:b0 --out $OUT/gpu_b0_eager
run "B0 backbones, 224 px, compiled" $B --compile --batch 64 --resolution 224 ours:b0 ours:b0+mb50 timm:b0 tv:b0 --baseline timm:b0 --out $OUT/gpu_b0_compiled
run "B4 backbones, 380 px, eager" $B --batch 32 --resolution 380 ours:b4 ours:b4+me timm:b4 tv:b4 --baseline timm:b4 --out $OUT/gpu_b4_eager
run "B4 backbones, 380 px, compiled" $B --compile --batch 32 --resolution 380 ours:b4 ours:b4+mb50 timm:b4 tv:b4 --baseline timm:b4 --out $OUT/gpu_b4_compiled
run "B4 U-Nets, 256 px, eager" $B --batch 16 --resolution 256 unet:b4 unet:b4+me unet_smp:b4 unet_timm:resnet50 --baseline unet_smp:b4 --out $OUT/gpu_unet_eager
run "EfficientDet D0 / effdet D0, 512 px, eager" $B --batch 16 --resolution 512 det:d0 det:d0+me effdet:d0 --baseline effdet:d0 --out $OUT/gpu_efficientdet_d0
run "EfficientDet D3 / effdet D3, 896 px, eager" $B --batch 4 --resolution 896 det:d3 det:d3+me effdet:d3 --baseline effdet:d3 --out $OUT/gpu_efficientdet_d3
# one short medical training run with AMP on the GPU
run "tools/train.py --amp (medical recipe, 200 iterations)" $PY tools/train.py configs/unet_effb4_medical.py --amp --max-iters 200 --work-dir /tmp/gpu_amp_run
# NCCL process group with one rank, and the SyncBN / DDP equality tests on CUDA
run "NCCL start-up, one rank" $PY -c "
import os, time, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29533', RANK='0', WORLD_SIZE='1')
start = time.perf_counter(); dist.init_process_group('nccl', device_id=torch.device('cuda:0'))
dist.all_reduce(torch.ones(1, device='cuda')); torch.cuda.synchronize()
print(f'nccl init + first all_reduce: {time.perf_counter() - start:.2f} s'); dist.destroy_process_group()"
run "SyncBN and DDP equality tests" $PY -m pytest -q -p no:randomly tests/tasks/engine/test_ddp_batchnorm.py tests/tasks/engine/test_distributed.py
echo "tables: $(ls $OUT/gpu_*.md 2>/dev/null | tr '\n' ' ')" | tee -a "$CHECKS"
