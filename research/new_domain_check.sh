#!/usr/bin/env bash
# Issue 39's check on a domain the ablation never looked at (Sports; Electronics, the held-back domain, is not in the
# shared data): X-Cross with the `xcross` defaults from the 2,000-user Toys and Tools sources of research/ablation.py,
# on 2,000 Sports users for one epoch, beside the references that need no training on the same test lists:
# the best reference (all train users, settings chosen on validation users) and the plain similarity + prior counted
# over the same 2,000 users (the mean of the history's title vectors + 0.1 log(1 + count): weight 0.5 at 0.2).
#   bash research/new_domain_check.sh   (records: research/results/ablation/new_domain_*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DATA=(--data-dir "${DATA_DIR:-../shared/data/amazon}" --max-eval-users 200 --val-users 200 --max-length 48 --seed 42)
OUT=runs/ablation/Sports
RECORDS=research/results/ablation
xcross() { "$PYTHON" -m modeling_xcross.pipeline.cli "$@"; }
[ -f $OUT/xcross/metrics.json ] || xcross train --target Sports --sources runs/ablation/sources/lora-toys \
    runs/ablation/sources/lora-tools "${DATA[@]}" --max-train-users 2000 --epochs 1 --batch-size 32 \
    --eval-batch-size 16 --output-dir $OUT/xcross
[ -f $OUT/best-reference/metrics.json ] || xcross baseline --method best-reference --domain Sports "${DATA[@]}" \
    --output-dir $OUT/best-reference
[ -f $OUT/similarity-prior/metrics.json ] || xcross baseline --method similarity-popularity --domain Sports \
    "${DATA[@]}" --max-train-users 2000 --history-decay 1.0 --temperature 0.2 --popularity-weight 0.5 \
    --output-dir $OUT/similarity-prior
mkdir -p $RECORDS
for run in xcross best-reference similarity-prior; do cp $OUT/$run/metrics.json $RECORDS/new_domain_Sports_$run.json; done
