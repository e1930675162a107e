#!/bin/bash
# Session 38, core 1: the narrow default (syn26r7) continued one cycle as syn27 was (no better), but with
# every crop in one of its 8 orientations (--augment dihedral, base and deltas), then the LoRAM stage as
# syn26r7's, export (not packaged until compared) and the comparison with syn26r7 on 24 Kodak and 6 per set.
set -e
cd /work/main
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
T="taskset -c 1 .venv/bin/python"
$T -m udic.train --config docs/training/loram-syn26r7/base-recipe.toml --out runs/base-aug38 \
    --init-from src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
    --seed 45 --synthetic 0.1 --augment dihedral --time-limit-minutes 68 --bf16 true --threads 1 > runs/base-aug38.out 2>&1
L="$T -m udic.train.lora --base runs/base-aug38/last.pt --out runs/lora-aug38 --base-rate 3 --rank 1 --hyper-rank 1 --exclude g_a.linear,g_s.linear --steps-per-rate 1500 --threads 1 --bf16 true --synthetic 0.1 --augment dihedral"
$L --rates 2 1 0 4 5 --lambda-override 5:0.12,0:0.0002 > runs/lora-aug38.out 2>&1
$L --rates 2 1 0 4 5 6 --lambda-override 5:0.12,0:0.0002,6:0.3 >> runs/lora-aug38.out 2>&1
$T -m udic.train.export runs/lora-aug38/last.pt --name udic-hp-aug38r7-loram --out-dir runs/export-aug38 > runs/export-aug38.out 2>&1
NEW=$(ls runs/export-aug38/udic-hp-aug38r7-loram-*.safetensors)
$T -m tools.model_vs_model "$NEW" src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
  --kodak 24 --domains kodak --json runs/aug38_vs_syn26r7-kodak.json --markdown runs/aug38_vs_syn26r7-kodak.md > runs/eval-aug38-kodak.log 2>&1
echo kodak > runs/run-aug38.kodak
$T -m tools.model_vs_model "$NEW" src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors \
  --images 6 --domains comic,line,vector,screen,pixel --json runs/aug38_vs_syn26r7-sets.json --markdown runs/aug38_vs_syn26r7-sets.md > runs/eval-aug38-sets.log 2>&1
echo done > runs/run-aug38.done
