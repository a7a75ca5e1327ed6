#!/usr/bin/env bash
# Creates .venv and installs tokencost with its test extra.
# - If the system Python already has torch (a GPU box), the venv sees it through
#   --system-site-packages and pip keeps it: the installed CUDA build is never replaced.
# - Otherwise torch==2.13.0 is installed first; on this project's CPU machines pip takes the
#   CPU build from the local wheel directory, never a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "setup: using the torch already installed for $PY ($("$PY" -c 'import torch; print(torch.__version__)'))"
    "$PY" -m venv --system-site-packages .venv
else
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e '.[test]'
touch .venv/.installed
