#!/bin/sh
# The one way this project is installed: by the Makefile (.venv), the Docker images and the
# fresh-install test (tests/test_packaging.py), so all three install exactly what CI passed with.
#
#   requirements/install.sh PIP LOCK [PROJECT ...]
#
# 1. torch, pinned by version only: its build is the platform's (the CPU wheel on our machines and
#    in the CPU image, where PIP_EXTRA_INDEX_URL names PyTorch's CPU index; the CUDA build from PyPI
#    in the CUDA image), so the lock leaves it out (pip-compile --unsafe-package torch).
# 2. Everything else from the lock, every file checked against its hash.
# 3. The project itself, resolving nothing more (an editable `-e .`, or `.` to build a wheel).
set -eu
pip="$1"
lock="$2"
shift 2
$pip install -q "torch==2.13.0"
$pip install -q --require-hashes -r "$lock"
if [ "$#" -gt 0 ]; then
    $pip install -q --no-deps --no-build-isolation "$@"
fi
