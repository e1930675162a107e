#!/bin/bash
# What the lent accelerator runs (docs/training.md, "Running training"): train the base recipe
# for MINUTES with the pack from `python -m tools.device_kit pack` (carry .device), then send the
# model back through $OUT in parts (join them here with `python -m tools.device_kit join`).
#   tools/device_train.sh MINUTES [extra udic.train flags...]
# Environment: RECIPE (default recipes/base-gpu.toml), RUN (a new runs/base-gpu-<time> per call,
# printed at the start: a warm machine keeps ignored outputs, and a run given an existing RUN
# resumes it, its time limit counted across calls), PYTHON (python3), DEVICE (cuda), PACK
# (.device), DEADLINE_S (560: seconds from this script's start by which everything, sending
# back included, is done; the device tool kills the whole command at 600 s, and a killed
# command runs no exit trap), TRAIN_TIMEOUT (minutes; default: what DEADLINE_S leaves after
# the start-up and SEND_BACK_S, 45 s, for the last copy).  Every checkpoint (every 2 minutes
# with the GPU recipe) is copied to $OUT as it lands, so even a killed run returns its last one.
# Tested on CPU with the tiny recipe (tests/test_device_kit.py).
set -euo pipefail
MINUTES=${1:?usage: tools/device_train.sh MINUTES [udic.train flags]}
shift
: "${OUT:?OUT must name the folder that comes back}"
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-recipes/base-gpu.toml}
RUN=${RUN:-runs/base-gpu-$(date +%Y%m%d-%H%M%S)}
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-.device}
DEADLINE_S=${DEADLINE_S:-560}
SEND_BACK_S=${SEND_BACK_S:-45}
echo "RUN=$RUN (give it again as RUN=... to resume)"
[ -d "$PACK/train" ] || { echo "no $PACK/train: run python -m tools.device_kit pack and carry .device" >&2; exit 2; }
if ! "$PYTHON" -c "import constriction" 2>/dev/null && compgen -G "$PACK/wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/udic-site "$PACK"/wheels/*.whl
  export PYTHONPATH=/tmp/udic-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
"$PYTHON" -c "import torch, numpy, constriction; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
if [ -z "${TRAIN_TIMEOUT:-}" ]; then
  TRAIN_TIMEOUT=$(awk "BEGIN { print ($DEADLINE_S - $SECONDS - $SEND_BACK_S) / 60 }")
  # Training's own limit counts steps only (not start-up or evaluations): it must fit with a margin.
  if awk "BEGIN { exit !($MINUTES * 60 + 30 > $TRAIN_TIMEOUT * 60) }"; then
    echo "MINUTES=$MINUTES does not fit: $TRAIN_TIMEOUT min are left for training before the deadline" \
         "(DEADLINE_S=$DEADLINE_S, SEND_BACK_S=$SEND_BACK_S); ask for fewer minutes" >&2
    exit 2
  fi
fi

STAGING=$RUN/.sending  # (outside $OUT: a kill during a split must not add files to what comes back)
copy_back() {  # the newest checkpoint into $OUT, each part over its old name and the manifest last,
               # so join's sha256 check refuses a set cut off half way
  if [ -f "$RUN/last.pt" ]; then
    rm -rf "$STAGING"
    "$PYTHON" -m tools.device_kit split "$RUN/last.pt" "$STAGING" >/dev/null
    for part in "$STAGING"/*.part*; do mv -f "$part" "$OUT/"; done
    mv -f "$STAGING"/*.parts.json "$OUT/"
    rm -rf "$STAGING"
  fi
}
copy_logs() {
  for log in train_log.csv eval_log.csv; do
    if [ -f "$RUN/$log" ]; then cp "$RUN/$log" "$OUT/"; fi
  done
}
STOP_WATCHING=$RUN/.stop-watching
watch_checkpoints() {  # beside training: each new last.pt goes back at once
  local seen=""
  while [ ! -e "$STOP_WATCHING" ]; do
    sleep 5
    local now
    now=$(stat -c %Y "$RUN/last.pt" 2>/dev/null || true)
    if [ -n "$now" ] && [ "$now" != "$seen" ]; then
      sleep 2  # (saves are atomic renames; this only lets a burst of them settle)
      copy_back || true
      copy_logs
      seen=$now
    fi
  done
}
send_back() {  # whatever happened to training: the last checkpoint and the logs go to $OUT
  # The watcher finishes the copy it may be making (killing it would orphan its split), then stops.
  if [ -n "${WATCHER:-}" ]; then touch "$STOP_WATCHING"; wait "$WATCHER" 2>/dev/null || true; fi
  copy_logs
  copy_back || echo "could not split $RUN/last.pt" >&2
  echo "sent back: $(ls "$OUT" | tr '\n' ' ')"
}
mkdir -p "$RUN"
rm -f "$STOP_WATCHING"
watch_checkpoints &
WATCHER=$!
trap send_back EXIT
timeout "${TRAIN_TIMEOUT}m" "$PYTHON" -m udic.train --config "$RECIPE" --out "$RUN" --device "$DEVICE" \
  --schedule time --time-limit-minutes "$MINUTES" --train-dir "$PACK/train" --kodak-dir "$PACK/kodak" "$@" \
  2>&1 | tee "$OUT/train.log"
