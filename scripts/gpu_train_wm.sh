#!/usr/bin/env bash
# Train a bundle's world model on a bare GPU box that has torch but not MuJoCo or this project's
# venv, from a packed dataset carried beside the code. Everything it makes lands in $OUT.
#
#   genrl pack-data --data data/walker --out .pack/walker --fields train --crf 20   # ~20 MB, on your machine
#   OUT=/tmp/out MINUTES=6 bash scripts/gpu_train_wm.sh                              # on the GPU box
#
# Settings (environment): PACKED (.pack/walker), BUNDLE (checkpoints/walker: warm start from its
# world model when it has one), PRESET (small), DEVICE (cuda), MINUTES of training (6), WM_SET
# (extra train-wm overrides), START_STATES (1: also rebuild the bundle's start_states.pt for the new
# world model, seconds on a GPU; 0: skip), BENCH (1: first measure behaviour updates/s, eager vs
# CUDA graphs, small and paper presets, into $OUT/behaviour_speed.md, ~4 min; 0: skip, the default),
# OUT (where results go).
set -uo pipefail
PACKED=${PACKED:-.pack/walker}
BUNDLE=${BUNDLE:-checkpoints/walker}
MINUTES=${MINUTES:-6}
PRESET=${PRESET:-small}
DEVICE=${DEVICE:-cuda}
WM_SET=${WM_SET:-}
START_STATES=${START_STATES:-1}
BENCH=${BENCH:-0}
OUT=${OUT:?set OUT to a folder for the results}
WORK=${WORK:-/tmp/genrl_gpu}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK/bundle"
log() { echo "[gpu_train_wm $(date +%T)] $*"; }
finish() {  # whatever happened, hand back what exists
    cp "$WORK/bundle/world_model.pt" "$WORK/bundle/config.json" "$WORK/bundle/start_states.pt" "$OUT/" 2>/dev/null
    cp "$WORK/bundle/logs/world_model.jsonl" "$OUT/" 2>/dev/null
    cp "$WORK/bundle/train_state/snapshots/"*.pt "$OUT/" 2>/dev/null
    log "results: $(ls "$OUT" | tr '\n' ' ')"
}
trap finish EXIT
nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
if [ "$BENCH" = 1 ]; then  # on the shipped world model, before anything changes it
    log "behaviour speed: eager vs compiled"
    timeout 300 $PY benchmarks/behaviour_speed.py --bundle "$BUNDLE" --device "$DEVICE" --updates 50 \
        | tee "$OUT/behaviour_speed.md"
fi
log "unpacking $PACKED"
timeout 180 $PY -m genrl_core.cli unpack-data --packed "$PACKED" --out "$WORK/data" --workers "$(nproc)" || exit 1
cp "$BUNDLE/config.json" "$BUNDLE/world_model.pt" "$WORK/bundle/" 2>/dev/null || log "no warm start: training from scratch"
train() {  # train for $1 minutes with extra overrides $2..; a hard timeout 90 s past the budget
    local minutes=$1; shift
    # shellcheck disable=SC2086  # WM_SET is a list of overrides
    timeout "$($PY -c "print(int($minutes * 60 + 90))")" $PY -m genrl_core.cli train-wm --data "$WORK/data" \
        --out "$WORK/bundle" --preset "$PRESET" --device "$DEVICE" --no-progress \
        --set train.max_minutes="$minutes" train.steps=1000000 train.checkpoint_minutes=1 $WM_SET "$@"
}
log "training for $MINUTES min"
start=$SECONDS
train "$MINUTES"
rc=$?
log "train-wm exited with $rc after $(( SECONDS - start )) s"
if [ "$rc" -ne 0 ] && [ $(( SECONDS - start )) -lt 200 ]; then  # e.g. the compiler failed: go on eagerly
    left=$($PY -c "print(round($MINUTES - ($SECONDS - $start) / 60, 2))")
    log "retrying without compile for $left min"
    train "$left" train.compile=false
fi
tail -n 3 "$WORK/bundle/logs/world_model.jsonl"
if [ "$START_STATES" = 1 ]; then  # they name the world model they were built for: stale ones refuse to load
    log "rebuilding start states"
    timeout 300 $PY -m genrl_core.cli start-states --data "$WORK/data" --bundle "$WORK/bundle" --device "$DEVICE"
fi
