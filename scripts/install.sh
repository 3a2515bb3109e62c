#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: apt packages for headless MuJoCo rendering,
# a .venv with the pinned requirements, and this package in editable mode.
# EXTRA_APT_PACKAGES adds apt packages (test.sh adds chromium for the browser test).
# Fast when everything is already there (a few dpkg/pip stamp checks).
set -euo pipefail
cd "$(dirname "$0")/.."

# g++ and python3-dev: torch.compile on a CPU builds its kernels with them (`compile=true`, its test)
APT_PACKAGES=(libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 g++ python3-dev ${EXTRA_APT_PACKAGES:-})

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
  echo "[install] apt packages: ${APT_PACKAGES[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "[install] creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the pins or the package metadata change, or when the editable install
# misses one of our packages (an older install made before app/ existed).
stamp=".venv/.installed-$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
packages_found() {
  (cd / && "$OLDPWD/.venv/bin/python" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in ('genrl_core', 'app')))")
}
if [ ! -f "$stamp" ] || ! packages_found; then
  echo "[install] pip install -r requirements.txt (torch from the local wheel cache where available)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
