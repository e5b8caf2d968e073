#!/usr/bin/env bash
# The main job on the default backbone (all-MiniLM-L6-v2), sized for a 2-core CPU: LoRA source adapters on Toys and
# Sports, X-Cross on Tools from them, the target-LoRA baseline on Tools, then the references that need no training
# (popularity, untrained-backbone similarity, random) on the same test lists, and one table of them all:
# OUT/comparison.md, OUT/comparison.json, OUT/comparison_mrr.png. Finished stages are reused on a rerun.
#   bash examples/minilm_toys_sports_to_tools.sh [OUT]
# environment: TRAIN_USERS, EVAL_USERS, VAL_USERS, EPOCHS, MAX_LENGTH, BACKBONE, DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/minilm}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
DATA=(--data-dir "${DATA_DIR:-../shared/data/amazon}" --max-eval-users "${EVAL_USERS:-200}"
      --val-users "${VAL_USERS:-100}" --max-length "${MAX_LENGTH:-48}" --seed 42)
TRAIN=("${DATA[@]}" --backbone "${BACKBONE:-sentence-transformers/all-MiniLM-L6-v2}"
       --max-train-users "${TRAIN_USERS:-200}" --epochs "${EPOCHS:-1}" --batch-size 32 --eval-batch-size 16)
START=$SECONDS
xcross() { "$PYTHON" -m modeling_xcross.pipeline.cli "$@"; }
# One stage: skipped when its metrics.json exists (a stopped run resumes: the pipeline does that itself).
stage() {
  local name=$1 dir=$2; shift 2
  if [ -f "$dir/metrics.json" ]; then echo "== $name: done before ($dir)"; return; fi
  local begun=$SECONDS
  echo "== $name ..."
  xcross "$@" --output-dir "$dir"
  echo "== $name: $((SECONDS - begun)) s (job $((SECONDS - START)) s)"
}
stage "LoRA on Toys (source)"    "$OUT/lora-toys"   train-adapter --domain Toys   "${TRAIN[@]}"
stage "LoRA on Sports (source)"  "$OUT/lora-sports" train-adapter --domain Sports "${TRAIN[@]}"
stage "X-Cross on Tools"         "$OUT/xcross-tools" train --target Tools --sources "$OUT/lora-toys" "$OUT/lora-sports" \
                                                     "${TRAIN[@]}"
stage "LoRA on Tools (baseline)" "$OUT/lora-tools"  train-adapter --domain Tools  "${TRAIN[@]}"
for method in popularity similarity random; do
  stage "$method (no training)" "$OUT/$method-tools" baseline --method "$method" --domain Tools "${DATA[@]}" \
        --backbone "${BACKBONE:-sentence-transformers/all-MiniLM-L6-v2}" --max-train-users "${TRAIN_USERS:-200}"
done
xcross compare --output-dir "$OUT" --runs "X-Cross=$OUT/xcross-tools" "Target LoRA=$OUT/lora-tools" \
       "popularity=$OUT/popularity-tools" "similarity=$OUT/similarity-tools" "random=$OUT/random-tools"
echo "== job: $((SECONDS - START)) s; table in $OUT/comparison.md, chart $OUT/comparison_mrr.png"
