#!/bin/bash
# Session 39, core 1: the narrow default (syn26r7) continued one cycle as syn27 was, but with half
# the crops cut from the image downscaled by 1/2..1 (--augment scale, base and deltas), then the LoRAM stage as
# syn26r7's, export (not packaged until compared) and the comparison with syn26r7 on 24 Kodak and 6 per set.
set -e
cd /work/main
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
T="taskset -c 1 .venv/bin/python"
$T -m udic.train --config docs/training/loram-syn26r7/base-recipe.toml --out runs/base-scale39 \
    --init-from src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
    --seed 46 --synthetic 0.1 --augment scale --time-limit-minutes 68 --bf16 true --threads 1 > runs/base-scale39.out 2>&1
L="$T -m udic.train.lora --base runs/base-scale39/last.pt --out runs/lora-scale39 --base-rate 3 --rank 1 --hyper-rank 1 --exclude g_a.linear,g_s.linear --steps-per-rate 1500 --threads 1 --bf16 true --synthetic 0.1 --augment scale"
$L --rates 2 1 0 4 5 --lambda-override 5:0.12,0:0.0002 > runs/lora-scale39.out 2>&1
$L --rates 2 1 0 4 5 6 --lambda-override 5:0.12,0:0.0002,6:0.3 >> runs/lora-scale39.out 2>&1
$T -m udic.train.export runs/lora-scale39/last.pt --name udic-hp-scale39r7-loram --out-dir runs/export-scale39 > runs/export-scale39.out 2>&1
NEW=$(ls runs/export-scale39/udic-hp-scale39r7-loram-*.safetensors)
$T -m tools.model_vs_model "$NEW" src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
  --kodak 24 --domains kodak --json runs/scale39_vs_syn26r7-kodak.json --markdown runs/scale39_vs_syn26r7-kodak.md > runs/eval-scale39-kodak.log 2>&1
echo kodak > runs/run-scale39.kodak
$T -m tools.model_vs_model "$NEW" src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
  --images 6 --domains comic,line,vector,screen,pixel --json runs/scale39_vs_syn26r7-sets.json --markdown runs/scale39_vs_syn26r7-sets.md > runs/eval-scale39-sets.log 2>&1
echo done > runs/run-scale39.done
