#!/usr/bin/env bash
# Install what is needed, then start the main job. Until the app lands this renders one
# episode of the walker MPC expert to out/walker_walk.mp4 and prints its true returns.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/genrl video --body walker --policy expert:walker_walk --out out/walker_walk.mp4 "$@"
