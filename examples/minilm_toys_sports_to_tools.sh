#!/usr/bin/env bash
# The main job on the default backbone (all-MiniLM-L6-v2), sized for a 2-core CPU: LoRA source adapters on Toys and
# Sports, X-Cross on Tools from them, the target-LoRA baseline on Tools (all with the CLI's default dual scoring:
# histories as the recency-weighted mean of their titles, a learned popularity prior), then the references that need
# no training (popularity, untrained-backbone similarity, the untrained dual model = similarity + popularity prior,
# random) on the same test lists, the best reference (popularity over all train users, recency-weighted, similarity
# + prior, their settings chosen on the latest train users), and one table of them all:
# OUT/comparison.md, OUT/comparison.json, OUT/comparison_mrr.png. Finished stages are reused on a rerun.
# Training takes the CLI's fast path (user batches sharing their negatives, each distinct title encoded once per step),
# at a smaller scale than the CLI's defaults (all train users, until validation stops improving) so that the job
# fits in 15 minutes on a 2-core CPU.
#   bash examples/minilm_toys_sports_to_tools.sh [OUT]
# environment: TRAIN_USERS, EVAL_USERS, VAL_USERS, EPOCHS, MAX_LENGTH, BACKBONE, DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/minilm}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
DATA=(--data-dir "${DATA_DIR:-../shared/data/amazon}" --max-eval-users "${EVAL_USERS:-200}"
      --val-users "${VAL_USERS:-100}" --max-length "${MAX_LENGTH:-48}" --seed 42)
TRAIN=("${DATA[@]}" --backbone "${BACKBONE:-sentence-transformers/all-MiniLM-L6-v2}"
       --max-train-users "${TRAIN_USERS:-2000}" --epochs "${EPOCHS:-0.25}" --batch-size 32 --eval-batch-size 16)
START=$SECONDS
echo "== scale: ${TRAIN_USERS:-2000} train users per domain, ${EPOCHS:-0.25} epoch, smaller than the xcross defaults (all train users, until validation stops improving), to fit in 15 minutes on a CPU"
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
# The references count popularity over all Tools train users (what a user has), not only the TRAIN_USERS trained on.
for method in popularity similarity similarity-popularity random best-reference; do
  stage "$method (no training)" "$OUT/$method-tools" baseline --method "$method" --domain Tools "${DATA[@]}" \
        --backbone "${BACKBONE:-sentence-transformers/all-MiniLM-L6-v2}"
done
xcross compare --output-dir "$OUT" --runs "X-Cross=$OUT/xcross-tools" "Target LoRA=$OUT/lora-tools" \
       "popularity=$OUT/popularity-tools" "similarity=$OUT/similarity-tools" \
       "similarity + popularity (untrained)=$OUT/similarity-popularity-tools" "random=$OUT/random-tools" \
       "best reference=$OUT/best-reference-tools"
# What the trained X-Cross recommends from the whole Tools catalogue to the first test user (its history: test.json
# without the last item, which is marked if it makes the top 10); the catalogue's item vectors are cached on first use.
TEST_USER=$("$PYTHON" -c 'import glob, json, sys; print(json.load(open(sorted(glob.glob(sys.argv[1] + "/candidates_test_*.json"))[0]))["lists"][0]["user"])' "$OUT/xcross-tools")
echo "== X-Cross's top 10 of the Tools catalogue for test user $TEST_USER"
xcross recommend --model-dir "$OUT/xcross-tools" --domain Tools --data-dir "${DATA_DIR:-../shared/data/amazon}" \
       --user "$TEST_USER" --top-k 10
echo "== job: $((SECONDS - START)) s; table in $OUT/comparison.md, chart $OUT/comparison_mrr.png"
