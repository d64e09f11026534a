#!/bin/sh
# The wheels a lent GPU machine needs to serve (gpu_session.sh, STAGES=serve), into .whl:
#
#   benchmarks/gpu_wheels.sh [DIR]
#
# That machine cannot reach a package index, and its image (Python 3.12, torch, triton, numpy,
# httpx, prometheus-client, pyyaml...: /work/.library/device/KINDS.md) lacks the server's web,
# parsing and scrubbing packages. These are carried at the versions of our runtime lock, with
# the Hugging Face packages that load the checkpoint and encode prompts (so the GPU serves what CI
# passed with, torch aside). About 27 MB: with the working tree (35 MB, the shipped model
# included) it stays inside the 64 MiB a device call carries.
set -eu
out="${1:-.whl}"
lock="$(dirname "$0")/../requirements/runtime.txt"
names="annotated-doc annotated-types anyio click fastapi h11 httpcore2 httpx2 huggingface-hub
kernels opentelemetry-api pyahocorasick pydantic pydantic-core redis regex safetensors starlette
tokenizers tomlkit transformers tree-sitter tree-sitter-python truststore typing-extensions
typing-inspection uvicorn"
pins=""
for name in $names; do
    pin=$(grep -oE "^$name==[^ ]+" "$lock") || { echo "$name is not in $lock" >&2; exit 1; }
    pins="$pins $pin"
done
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$out" $pins
echo "$(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
