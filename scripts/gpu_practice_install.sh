#!/usr/bin/env bash
# Here, after `scripts/gpu_practice.sh` ran on the GPU box: make its bundle whole again and put it
# where the next call (and the app) read it.
#
#   bash scripts/gpu_practice_install.sh FILES_AT       # FILES_AT: where the call's $OUT came back
#
# The box hands back the bundle without the VLM (unchanged) and with the connector of the old world
# model (no VLM there to refit it). This adds the VLM back, refits the connector and aligner to the
# practised world model (warm-started, CONNECTOR_UPDATES more updates on this CPU), then replaces
# DEST with it. Commit DEST only once its scores beat the shipped ones (see practice.json).
#
# Settings (environment): DEST (checkpoints/walker), DATA (data/walker, with the dataset the
# connector fits), CONNECTOR_UPDATES (300), PY (.venv/bin/python).
set -euo pipefail
SRC=${1:?usage: gpu_practice_install.sh FILES_AT}/bundle
DEST=${DEST:-checkpoints/walker}
DATA=${DATA:-data/walker}
CONNECTOR_UPDATES=${CONNECTOR_UPDATES:-300}
PY=${PY:-.venv/bin/python}
STAGE=${STAGE:-runs/gpu_practice_bundle}
log() { echo "[gpu_practice_install $(date +%T)] $*"; }
[ -f "$SRC/world_model.pt" ] || { log "no practised bundle in $SRC"; exit 1; }
[ -d "$DATA" ] || { log "no dataset at $DATA: genrl collect --recipe default --out $DATA"; exit 1; }

rm -rf "$STAGE" && mkdir -p "$(dirname "$STAGE")" && cp -r "$SRC" "$STAGE" && chmod -R u+w "$STAGE"
cp "$DEST/vlm.pt" "$STAGE/"
$PY -m genrl_core.cli embed-dataset --data "$DATA" --bundle "$STAGE"  # cached per VLM: instant the second time
step=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['connector']['train']['step'])" "$STAGE/config.json")
log "refitting the connector: $CONNECTOR_UPDATES updates from step $step"
$PY -m genrl_core.cli train-connector --data "$DATA" --bundle "$STAGE" --warm-start --no-progress \
    --train.steps $(( step + CONNECTOR_UPDATES ))
rm -rf "$STAGE/train_state" "$DEST/policies"  # the old policies learned on the old world model
cp -r "$STAGE"/. "$DEST"/
log "installed in $DEST: $(du -sh "$DEST" | cut -f1); its scores: $SRC/../practice.json"
