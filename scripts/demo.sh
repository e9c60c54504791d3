#!/usr/bin/env bash
# Fresh machine -> set up, then run the main job end to end, headless, in a
# Scipion project on a simulated dataset. Outputs and plots go to ./demo_output
# (or the folder given as first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${GMM_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" scripts/demo.py --out "${1:-demo_output}"
