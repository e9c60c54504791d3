#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment (.venv) with
# torch 2.13.0 (CPU wheel; a CUDA build also works), Scipion (pyworkflow, pwem,
# scipion-em-relion, scipion-em-cryosparc2) and this plugin (editable), plus
# the optional Debian tools used by tests and benchmarks (relion, xvfb) and by
# atomic model refinement
# (refmac-dictionary: the CCP4 monomer library; tortoize, king-probe:
# validation) when apt is available.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GMM_VENV:-.venv}
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    APT_PKGS="relion xvfb refmac-dictionary tortoize king-probe"
    if ! command -v relion_reconstruct >/dev/null || ! command -v Xvfb >/dev/null \
       || ! command -v tortoize >/dev/null || ! command -v king-probe >/dev/null \
       || [ ! -d /usr/share/refmac/monomers ]; then
        (apt-get install -y -q $APT_PKGS >/dev/null 2>&1 \
         || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $APT_PKGS >/dev/null 2>&1)) \
         || echo "note: could not install $APT_PKGS; tests that need them are skipped"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, pwem, relion, pyrama, cryosparc2, cryosparc.dataset, gmmplugin" >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q -e ".[test,cryosparc]"
fi
echo "environment ready: $VENV"
