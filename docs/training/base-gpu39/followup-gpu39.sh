#!/bin/bash
# Session 39: after base-gpu-cpu39 (gpu38 recipe, --augment scale, 192 px crops throughout) ends: export (not packaged until compared) and compare with gpu31 on all 24 Kodak images (core 0).
set -e
cd /work/main
while pgrep -f "udic.train --config runs/base-gpu-cpu39/recipe.toml" >/dev/null; do sleep 20; done
taskset -c 0 .venv/bin/python -m udic.train.export runs/base-gpu-cpu39/last.pt --name udic-hp-gpu39-wide --out-dir runs/export-gpu39 > runs/export-gpu39.out 2>&1
NEW=$(ls runs/export-gpu39/udic-hp-gpu39-wide-*.safetensors)
OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m tools.model_vs_model "$NEW" src/udic/weights/udic-hp-gpu31-wide-dd01c2bb77ba83d9.safetensors \
  --kodak 24 --domains kodak --json runs/gpu39_vs_gpu31-kodak.json --markdown runs/gpu39_vs_gpu31-kodak.md > runs/eval-gpu39.log 2>&1
echo done > runs/followup-gpu39.done
