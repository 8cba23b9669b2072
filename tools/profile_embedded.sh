#!/usr/bin/env bash
# The exact command that produced the embedded dataset maplex/assets/profiled/ (see its README.md).
# Run from the repository root with maplex installed (e.g. `make dev`) and the onnx extra
# (pip install 'maplex[onnx]'). It takes about a quarter of an hour on an otherwise idle 2-vCPU machine; if it is
# interrupted, run it again: it resumes where it stopped and loses nothing it measured.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c 'import sys; from maplex.profile import main; sys.exit(main())' \
    --out maplex/assets/profiled \
    --settings torch-t1-b1 torch-t1-b4 ort-t1-b1 ort-t1-b4 \
    --n-test 1100 --seed 0 --warmup 2 --repeats 7 --op-number 20 --probe-repeats 21
