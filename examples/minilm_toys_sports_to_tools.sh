#!/usr/bin/env bash
# The main job on the default backbone (all-MiniLM-L6-v2), small enough for a CPU: LoRA source adapters on Toys and
# Sports, X-Cross on Tools from them, the target-LoRA baseline on Tools; each run writes OUT/<run>/metrics.json.
#   bash examples/minilm_toys_sports_to_tools.sh [OUT]      (environment: TRAIN_USERS, EVAL_USERS, VAL_USERS, EPOCHS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/minilm}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
COMMON=(--data-dir "${DATA_DIR:-../shared/data/amazon}" --max-train-users "${TRAIN_USERS:-300}"
        --max-eval-users "${EVAL_USERS:-200}" --val-users "${VAL_USERS:-50}" --epochs "${EPOCHS:-1}"
        --train-negatives "${TRAIN_NEGATIVES:-3}" --max-length "${MAX_LENGTH:-64}" --eval-batch-size 8 --seed 42)
xcross() { "$PYTHON" -m modeling_xcross.pipeline.cli "$@"; }
xcross train-adapter --domain Toys   --output-dir "$OUT/lora-toys"   "${COMMON[@]}"
xcross train-adapter --domain Sports --output-dir "$OUT/lora-sports" "${COMMON[@]}"
xcross train --target Tools --sources "$OUT/lora-toys" "$OUT/lora-sports" --output-dir "$OUT/xcross-tools" "${COMMON[@]}"
xcross train-adapter --domain Tools  --output-dir "$OUT/lora-tools"  "${COMMON[@]}"
for run in lora-toys lora-sports xcross-tools lora-tools; do echo "$run: $(cat "$OUT/$run/metrics.json" | head -8 | tr -d '\n ')"; done
