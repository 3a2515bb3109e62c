#!/usr/bin/env bash
# Install what is needed (plus Debian's chromium for the app's browser test), then run the
# linter and the default (fast) test suite.
# Extra arguments go to pytest, e.g. `./test.sh -m slow` for the long checks (CI's second stage,
# `.ci/run --slow`). Skips and expected failures are listed with their reasons at the end (-rsx).
set -euo pipefail
cd "$(dirname "$0")"
EXTRA_APT_PACKAGES="chromium ${EXTRA_APT_PACKAGES:-}" bash scripts/install.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
