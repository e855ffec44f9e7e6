#!/usr/bin/env bash
# The CPU benchmark runs behind docs/benchmarks.md (tools/benchmark.py over benchmarks/speed.py;
# one thread: the other core of the 2-core machine was busy with other jobs; candidates alternate
# A B C ... in each round). The b0/b4/unet tables were measured with the lean malloc thresholds
# (then the workers' fixed setting); the workers now run with glibc's defaults, so rerunning these
# lines gives default-allocator figures: append @lean to each candidate to repeat the old setting.
set -euo pipefail
cd "$(dirname "$0")/../.."
B="python tools/benchmark.py --resolution 256 --warmup 1 --steps 3 --rounds 2 --threads 1"
$B --batch 8 ours:b0 ours:b0+me ours:b0+cp timm:b0 timm_tf:b0 tv:b0 --baseline timm:b0 --out docs/bench/b0_cpu_train
$B --batch 8 ours:b4 ours:b4+me ours:b4+cp timm:b4 timm_tf:b4 tv:b4 --baseline timm:b4 --out docs/bench/b4_cpu_train
$B --batch 4 unet:b4 unet:b4+me unet_smp:b4 unet_timm:resnet50 --baseline unet_smp:b4 --out docs/bench/unet_cpu_train
# CPU memory a user sees: glibc's default allocator against cpu_allocator='lean' (2 threads)
python tools/benchmark.py ours:b0+me ours:b0+me@lean timm:b0 timm:b0@lean tv:b0 tv:b0@lean --batch 8 --resolution 256 --warmup 1 --steps 3 --rounds 2 --baseline timm:b0 --out docs/bench/allocator_b0_cpu
# the fast depthwise weight gradient against PyTorch's (+atendw) and the peers (2 threads)
python tools/benchmark.py ours:b0 ours:b0+me ours:b0+atendw ours:b0+me+atendw timm:b0 tv:b0 --batch 8 --resolution 256 --warmup 1 --steps 3 --rounds 3 --baseline tv:b0 --out docs/bench/fastdw_b0_cpu
python tools/benchmark.py ours:b4 ours:b4+me ours:b4+atendw ours:b4+me+atendw timm:b4 tv:b4 --batch 8 --resolution 256 --warmup 1 --steps 3 --rounds 2 --baseline tv:b4 --out docs/bench/fastdw_b4_cpu
python tools/benchmark.py unet:b4 unet:b4+me unet:b4+atendw unet_smp:b4 unet_timm:resnet34 unet_timm:resnet50 --batch 4 --resolution 256 --warmup 1 --steps 3 --rounds 2 --baseline unet_smp:b4 --out docs/bench/fastdw_unet_cpu
python tools/benchmark.py ours:b0 ours:b0+me ours:b0+atendw timm:b0 tv:b0 --compile --batch 8 --resolution 256 --warmup 1 --steps 3 --rounds 1 --baseline timm:b0 --out docs/bench/fastdw_b0_cpu_compiled
# element-wise operators' time and share of memory bandwidth (--bandwidth, 2 threads)
BW="python tools/benchmark.py --resolution 256 --warmup 1 --steps 3 --rounds 2 --threads 2 --bandwidth"
$BW --batch 8 ours:b0 ours:b0+me ours:b0@caching ours:b0+me@caching timm:b0 tv:b0 --baseline timm:b0 --out docs/bench/bandwidth_b0_cpu
$BW --batch 8 ours:b4 ours:b4+me ours:b4@caching ours:b4+me@caching timm:b4 tv:b4 --baseline timm:b4 --out docs/bench/bandwidth_b4_cpu
$BW --batch 4 unet:b4 unet:b4+me unet_smp:b4 unet_timm:resnet50 --baseline unet_smp:b4 --out docs/bench/bandwidth_unet_cpu
$BW --channels-last --batch 8 ours:b0@caching ours:b0+me@caching timm:b0 timm:b0@caching tv:b0 --baseline timm:b0 --out docs/bench/bandwidth_b0_cl_cpu
# the checkpointing and U-Net-against-ResNet-50 targets with the caching allocator (2 threads)
T="python tools/benchmark.py --resolution 256 --warmup 1 --steps 3 --rounds 2 --threads 2"
$T --batch 8 ours:b0+cp ours:b0+cp@caching ours:b0+me@caching timm:b0 timm:b0@caching --baseline timm:b0 --out docs/bench/targets_b0_cp_cpu
$T --batch 4 unet:b4+me unet:b4+me@caching unet_timm:resnet50 unet_timm:resnet50@caching --baseline unet_timm:resnet50 --out docs/bench/targets_unet_r50_cpu
