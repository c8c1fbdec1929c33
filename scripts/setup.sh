#!/usr/bin/env bash
# Set up equilens in a virtual environment (.venv by default) on a fresh machine.
#
#   bash scripts/setup.sh            # runtime + dev tools (pytest, ruff, mypy)
#   VENV=/path/to/venv bash scripts/setup.sh
#
# Order matters:
# 1. torch==2.13.0 first (the CPU wheel); every later pip call gets constraints.txt so nothing
#    upgrades it to a multi-GB CUDA build.
# 2. the other dependencies from requirements.txt (numpy<2 because of escnn's lie_learn).
# 3. escnn with --no-deps: its dependency py3nj builds from Fortran source and is only needed
#    for 3D groups; escnn's other dependencies are in requirements.txt.
# 4. equilens itself, editable, with --no-deps (everything is already there).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q -r requirements.txt -c constraints.txt pytest ruff mypy
$PIP install -q --no-deps -c constraints.txt "escnn==1.0.11"
$PIP install -q --no-deps -e .
"$VENV/bin/python" -c "import equilens, escnn, lenstronomy, torch; print('equilens', equilens.__version__, '| torch', torch.__version__, '| lenstronomy', lenstronomy.__version__)"
