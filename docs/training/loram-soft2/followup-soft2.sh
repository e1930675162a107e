#!/bin/bash
# After base-soft2 ends: the LoRAM stage as soft1's but at synthetic share 0.25 (style 2), then export (not packaged until compared).
set -e
cd /work/main
while pgrep -f "udic.train --config docs/training/loram-syn26r7/base-recipe.toml --out runs/base-soft2" >/dev/null; do sleep 20; done
L="taskset -c 0 .venv/bin/python -m udic.train.lora --base runs/base-soft2/last.pt --out runs/lora-soft2 --base-rate 3 --rank 1 --hyper-rank 1 --exclude g_a.linear,g_s.linear --steps-per-rate 1500 --threads 1 --bf16 true --synthetic 0.25 --synthetic-style 2"
$L --rates 2 1 0 4 5 --lambda-override 5:0.12,0:0.0002 > runs/lora-soft2.out 2>&1
$L --rates 2 1 0 4 5 6 --lambda-override 5:0.12,0:0.0002,6:0.3 >> runs/lora-soft2.out 2>&1
taskset -c 0 .venv/bin/python -m udic.train.export runs/lora-soft2/last.pt --name udic-hp-soft2r7-loram --out-dir runs/export-soft2 > runs/export-soft2.out 2>&1
echo done > runs/followup-soft2.done
