#!/usr/bin/env bash
# The device check (bench/gpu_check.py) as one call on a lent GPU machine, under 5 min:
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=420)
# Wheels carried in .whl/ (PyAV for the decode/segment/encoder rows, nudenet for
# moderation; see the docstring of bench/gpu_check.py) are installed first; without
# them those rows say why they were skipped. Here: `bash bench/gpu_check.sh --cpu`.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
PY=python3
[ -x .venv/bin/python ] && [ "${1:-}" = "--cpu" ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp}/gpu_check.txt"
timeout 290 "$PY" bench/gpu_check.py "$@" 2>&1 | tee "$out"
