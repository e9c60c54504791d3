#!/usr/bin/env bash
# Set up (if needed) and run the test suite: engine unit tests and headless
# Scipion workflow tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${GMM_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export GMM_SCIPION_ROOT=${GMM_SCIPION_ROOT:-$PWD/.scipion}
rm -rf "$GMM_SCIPION_ROOT/data/projects"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning gmmplugin/tests "$@"
