#!/bin/bash
# After the LoRA stage and export: soft2 against syn26r7 (effort 0, real files, 6 images per set), on both cores.
cd /work/main
while [ ! -f runs/followup-soft2.done ]; do sleep 10; done
NEW=$(ls runs/export-soft2/udic-hp-soft2r7-loram-*.safetensors | head -1)
OLD=src/udic/weights/udic-hp-syn26r7-loram-78e43aeb1405ce38.safetensors
taskset -c 0 .venv/bin/python -m tools.model_vs_model $NEW $OLD --images 6 --domains comic,line,vector --json runs/soft2_vs_syn26r7-a.json --markdown runs/soft2_vs_syn26r7-a.md > runs/eval-soft2-a.out 2>&1 &
taskset -c 1 .venv/bin/python -m tools.model_vs_model $NEW $OLD --images 6 --domains screen,pixel --json runs/soft2_vs_syn26r7-b.json --markdown runs/soft2_vs_syn26r7-b.md > runs/eval-soft2-b.out 2>&1 &
wait
echo done > runs/eval-soft2.done
