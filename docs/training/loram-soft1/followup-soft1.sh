#!/bin/bash
# After base-soft1 ends: the LoRAM stage as syn26r7's (synthetic share 0.5, style 2: with soft vector art), then export (not packaged).
set -e
cd /work/main
while pgrep -f "udic.train --config docs/training/loram-syn26r7/base-recipe.toml --out runs/base-soft1" >/dev/null; do sleep 20; done
L="taskset -c 0 .venv/bin/python -m udic.train.lora --base runs/base-soft1/last.pt --out runs/lora-soft1 --base-rate 3 --rank 1 --hyper-rank 1 --exclude g_a.linear,g_s.linear --steps-per-rate 1500 --threads 1 --bf16 true --synthetic 0.5 --synthetic-style 2"
$L --rates 2 1 0 4 5 --lambda-override 5:0.12,0:0.0002 > runs/lora-soft1.out 2>&1
$L --rates 2 1 0 4 5 6 --lambda-override 5:0.12,0:0.0002,6:0.3 >> runs/lora-soft1.out 2>&1
taskset -c 0 .venv/bin/python -m udic.train.export runs/lora-soft1/last.pt --name udic-hp-soft1r7-loram --out-dir runs/export-soft1 > runs/export-soft1.out 2>&1
echo done > runs/followup-soft1.done
