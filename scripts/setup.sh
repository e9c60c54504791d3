#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment (.venv) with
# torch 2.13.0 (CPU wheel; a CUDA build also works), Scipion (pyworkflow, pwem,
# scipion-em-relion) and this plugin (editable), plus the optional Debian tools
# used by tests and benchmarks (relion, xvfb) when apt is available.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GMM_VENV:-.venv}
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! command -v relion_reconstruct >/dev/null || ! command -v Xvfb >/dev/null; then
        (apt-get install -y -q relion xvfb >/dev/null 2>&1 \
         || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q relion xvfb >/dev/null 2>&1)) \
         || echo "note: could not install relion/xvfb; tests that need them are skipped"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, pwem, relion, gmmplugin" >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q -e ".[test]"
fi
echo "environment ready: $VENV"
