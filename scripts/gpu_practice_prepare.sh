#!/usr/bin/env bash
# Build, on your machine, everything `scripts/gpu_practice.sh` needs on a bare GPU box that has
# python3 and torch but no MuJoCo, dm_control, VLM or project venv. All of it lands in .pack/ and
# .gl/ (kept out of git by .git/info/exclude), sized to travel beside the tracked files:
#
#   .pack/sim-cpXY.tar.xz   mujoco + dm_control + dm-env + PyOpenGL, trimmed to what renders the
#                           suite bodies (~5 MB; built from the pinned wheels, never from the venv)
#   .pack/DATA_NAME/        the dataset packed as H.264 with every task's reward (`pack-data --fields practice`)
#   .pack/targets/          each prompt driver's target frames, decoded here by the bundle's VLM
#   .gl/*.deb               the GL loader libraries EGL rendering needs there
#
#   bash scripts/gpu_practice_prepare.sh                       # walker defaults
#   PYVER=3.11 bash scripts/gpu_practice_prepare.sh            # a copy for this machine's python (to try the box script here)
#
# Settings (environment): BUNDLE (checkpoints/walker), DATA (data/walker), PYVER of the box's
# python (3.12), CRF of the packed video (20), DRIVERS (the prompt drivers whose targets to write,
# one spec per line, as `genrl practice --driver` takes them), PY (.venv/bin/python).
set -euo pipefail
BUNDLE=${BUNDLE:-checkpoints/walker}
DATA=${DATA:-data/walker}
PYVER=${PYVER:-3.12}
CRF=${CRF:-20}
PY=${PY:-.venv/bin/python}
DRIVERS=${DRIVERS:-"stand up straight@walker_stand
walk forward@walker_walk
run fast@walker_run"}
PACK=.pack
TAG=cp${PYVER/./}
log() { echo "[gpu_practice_prepare $(date +%T)] $*"; }
grep -qx '/.pack/' .git/info/exclude 2>/dev/null || echo /.pack/ >>.git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
mkdir -p "$PACK"

if [ ! -f "$PACK/sim-$TAG.tar.xz" ]; then
    log "simulator wheels for python $PYVER"
    wheels=$(mktemp -d) site=$(mktemp -d)
    # the versions requirements.txt pins; --no-deps: the box already has numpy, scipy, absl-py and lxml
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$wheels" \
        mujoco==3.17.0 dm-control==1.0.50 dm-env==1.6 PyOpenGL==3.1.10
    for w in "$wheels"/*.whl; do $PY -m zipfile -e "$w" "$site"; done
    # not needed to render the suite bodies or our own MJCF ones: the studio, filament, the
    # locomotion and manipulation suites, the dog's assets, test data and the Blender exporter
    (cd "$site" && rm -rf mujoco/experimental mujoco/_render_filament* dm_control/locomotion \
        dm_control/suite/dog_assets dm_control/mujoco/testing dm_control/blender dm_control/mjcf/test_assets \
        dm_control/manipulation dm_control/third_party/kinova ./*.dist-info)
    tar -C "$site" -cJf "$PACK/sim-$TAG.tar.xz" .
    rm -rf "$wheels" "$site"
fi
log "simulator: $(du -h "$PACK/sim-$TAG.tar.xz" | cut -f1)"

name=$(basename "$DATA")
log "packing $DATA -> $PACK/$name (rerunning skips packed episodes)"
$PY -m genrl_core.cli pack-data --data "$DATA" --out "$PACK/$name" --fields practice --crf "$CRF" --workers 2

log "prompt targets -> $PACK/targets"
DRIVERS="$DRIVERS" $PY - "$BUNDLE" "$PACK/targets" <<'EOF'
import os, sys
from pathlib import Path
from genrl_core.practice import PracticeDriver, PracticePlan, write_prompt_targets

specs = [s for s in os.environ["DRIVERS"].splitlines() if s.strip()]
plan = PracticePlan(drivers=tuple(PracticeDriver.parse(s) for s in specs))
write_prompt_targets(Path(sys.argv[1]), plan, Path(sys.argv[2]))
print(*sorted(p.name for p in Path(sys.argv[2]).glob("*.npy")))
EOF

if ! ls .gl/*.deb >/dev/null 2>&1; then
    log "GL loader libraries -> .gl"
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086  # $o is a list of options
    apt-get $o update -qq && (cd .gl && apt-get $o download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
log "ready: $(du -sh "$PACK" .gl | tr '\n' ' ')"
