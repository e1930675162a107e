#!/bin/bash
# What the lent accelerator runs (docs/training.md, "Running training"): train the base recipe
# for MINUTES with the pack from `python -m tools.device_kit pack` (carry .device), then send the
# model back through $OUT in parts (join them here with `python -m tools.device_kit join`).
#   tools/device_train.sh MINUTES [extra udic.train flags...]
# Environment: RECIPE (default recipes/base-gpu.toml), RUN (a new runs/base-gpu-<time> per call: a
# warm machine keeps ignored outputs, and a run given an existing RUN resumes it, its time limit
# counted across calls), PYTHON (python3), DEVICE (cuda), PACK (.device), TRAIN_TIMEOUT (MINUTES
# plus 1.5, in minutes: training is stopped then, so that the model still comes back inside the
# tool's 10-minute limit; it checkpoints every 2 minutes).  Tested on CPU with the tiny recipe (tests/test_device_kit.py).
set -euo pipefail
MINUTES=${1:?usage: tools/device_train.sh MINUTES [udic.train flags]}
shift
: "${OUT:?OUT must name the folder that comes back}"
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-recipes/base-gpu.toml}
RUN=${RUN:-runs/base-gpu-$(date +%Y%m%d-%H%M%S)}
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-.device}
[ -d "$PACK/train" ] || { echo "no $PACK/train: run python -m tools.device_kit pack and carry .device" >&2; exit 2; }
if ! "$PYTHON" -c "import constriction" 2>/dev/null && compgen -G "$PACK/wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/udic-site "$PACK"/wheels/*.whl
  export PYTHONPATH=/tmp/udic-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
"$PYTHON" -c "import torch, numpy, constriction; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-$(awk "BEGIN { print $MINUTES + 1.5 }")}
send_back() {  # whatever happened to training: the last checkpoint and the logs go to $OUT
  if [ -f "$RUN/last.pt" ]; then
    "$PYTHON" -m tools.device_kit split "$RUN/last.pt" "$OUT"
  fi
  for log in train_log.csv eval_log.csv; do
    if [ -f "$RUN/$log" ]; then cp "$RUN/$log" "$OUT/"; fi
  done
  echo "sent back: $(ls "$OUT" | tr '\n' ' ')"
}
trap send_back EXIT
timeout "${TRAIN_TIMEOUT}m" "$PYTHON" -m udic.train --config "$RECIPE" --out "$RUN" --device "$DEVICE" \
  --schedule time --time-limit-minutes "$MINUTES" --train-dir "$PACK/train" --kodak-dir "$PACK/kodak" "$@" \
  2>&1 | tee "$OUT/train.log"
