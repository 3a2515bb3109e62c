#!/usr/bin/env bash
# `genrl practice` for one call on a bare GPU box (python3 + torch, nothing of ours installed):
# renders with EGL from a carried, trimmed MuJoCo, acts with the box's cores as env workers, trains
# on the GPU, and hands back the practised bundle. Everything it makes lands in $OUT.
#
#   bash scripts/gpu_practice_prepare.sh                          # here, once: .pack/ and .gl/
#   OUT=/tmp/out MINUTES=7 bash scripts/gpu_practice.sh          # there (carry .pack and .gl)
#   bash scripts/gpu_practice_install.sh FILES_AT                  # here: the bundle into checkpoints/
#
# A second call continues from the first: once installed, the practised bundle is what travels
# (its world model and policies are tracked files), and its policies warm-start every learner.
# The replay stays on the box: the policies collect it again.
#
# Settings (environment): BUNDLE (checkpoints/walker), PACKED dataset (.pack/walker), MINUTES of
# practising (7; scoring and writing the bundle come after), WORKERS env processes (cores - 2),
# DEVICE (cuda), FRAMES to stop at (1000000), TRAIN_RATIO (32), EVAL_EVERY frames (50000), DRIVERS
# (one `--driver` spec per line), PRACTICE_SET (extra `genrl practice` flags), GL (1: unpack
# .gl/*.deb into /; 0 where the GL libraries are already there), PY (python3), OUT.
set -uo pipefail
BUNDLE=${BUNDLE:-checkpoints/walker}
PACKED=${PACKED:-.pack/walker}
MINUTES=${MINUTES:-7}
WORKERS=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-1000000}
TRAIN_RATIO=${TRAIN_RATIO:-32}
EVAL_EVERY=${EVAL_EVERY:-50000}
DRIVERS=${DRIVERS:-"stand up straight@walker_stand
walk forward@walker_walk
run fast@walker_run
oracle:walker_walk
oracle:walker_run
explore"}
PRACTICE_SET=${PRACTICE_SET:-}
GL=${GL:-1}
PY=${PY:-python3}
OUT=${OUT:?set OUT to a folder for the results}
WORK=${WORK:-/tmp/genrl_practice}
RUN=$WORK/run
log() { echo "[gpu_practice $(date +%T)] $*"; }
mkdir -p "$OUT" "$WORK"
finish() {  # whatever happened, hand back what exists: the bundle without the VLM it did not change
    if [ -d "$RUN/bundle" ]; then
        mkdir -p "$OUT/bundle"
        (cd "$RUN/bundle" && find . -path ./vlm.pt -prune -o -path ./train_state -prune -o -type f -print \
            | tar -cf - -T -) | tar -C "$OUT/bundle" -xf -
    fi
    cp "$RUN/practice.json" "$OUT/" 2>/dev/null
    cp -r "$RUN/logs" "$OUT/" 2>/dev/null
    log "results: $(du -sh "$OUT" | cut -f1) in $OUT"
}
trap finish EXIT

tag=$($PY -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[ -f ".pack/sim-$tag.tar.xz" ] || { log "no .pack/sim-$tag.tar.xz: run scripts/gpu_practice_prepare.sh (PYVER)"; exit 1; }
if [ "$GL" = 1 ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
mkdir -p "$WORK/site" && tar -C "$WORK/site" -xJf ".pack/sim-$tag.tar.xz"
export PYTHONPATH=$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi -L 2>/dev/null
timeout 120 $PY -c "
import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())
from genrl_core.envs import PixelEnv
import mujoco; env = PixelEnv('walker_walk'); print('mujoco', mujoco.__version__, mujoco.__file__, 'render', env.reset().image.shape)" || { log "the simulator does not render"; exit 1; }

[ -d "$WORK/data" ] || { log "unpacking $PACKED"; timeout 300 $PY -m genrl_core.cli unpack-data --packed "$PACKED" \
    --out "$WORK/data" --workers "$(nproc)" || exit 1; }
mkdir -p "$RUN/train_state/targets" && cp .pack/targets/*.npy "$RUN/train_state/targets/"  # no VLM here

args=()
while IFS= read -r spec; do [ -n "$spec" ] && args+=(--driver "$spec"); done <<<"$DRIVERS"
log "practising for $MINUTES min with $WORKERS env workers"
start=$SECONDS
# a hard limit past the budget for the last cycle, the scores and the bundle
# shellcheck disable=SC2086  # PRACTICE_SET is a list of flags
timeout "$($PY -c "print(int($MINUTES * 60 + 240))")" $PY -m genrl_core.cli practice --bundle "$BUNDLE" \
    --data "$WORK/data" --out "$RUN" --device "$DEVICE" --workers "$WORKERS" --minutes "$MINUTES" \
    --frames "$FRAMES" --train-ratio "$TRAIN_RATIO" --eval-every "$EVAL_EVERY" --connector-updates 0 \
    "${args[@]}" $PRACTICE_SET
log "practice exited with $? after $(( SECONDS - start )) s"
