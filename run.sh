#!/usr/bin/env bash
# Install what is needed, then serve the app (REST API + UI) on the shipped walker bundle:
# open the URL it prints (http://127.0.0.1:7860/). Extra arguments go to `genrl serve`,
# e.g. `./run.sh --host 0.0.0.0 --port 8080 --max-jobs 2 --token SECRET`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/genrl serve "$@"
