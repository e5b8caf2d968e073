#!/usr/bin/env bash
# The E1-E5 grid of examples/experiments/dual_grid.json (the CLI's default dual scoring, three targets) on a 2-core
# machine: two runners with one thread each, seed after seed. Runner A trains each seed's E1 adapters, then its E2
# X-Cross models; runner B runs the references (E5), the 25% target LoRAs, the zero-shot sources and X-Lora's
# record, then the 25% X-Cross models once A's adapters of that seed exist. Records go to docs/results/records_dual/;
# a rerun skips recorded runs and resumes stopped ones. Then: python examples/report.py --config ... --output ...
#   bash examples/experiments/dual_grid.sh [SEED ...]        (default: 42 43 44)
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
CONFIG=examples/experiments/dual_grid.json
TARGETS=(Tools Sports Toys)
export OMP_NUM_THREADS=1
run() { nice "$PYTHON" examples/experiments.py --config "$CONFIG" --runs "$(IFS=,; echo "$*")"; }
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(42 43 44)
for seed in "${seeds[@]}"; do
  a=() b=() later=()
  for domain in "${TARGETS[@]}"; do a+=("E1_lora_${domain}_seed$seed"); done
  for target in "${TARGETS[@]}"; do
    a+=("E2_xcross_${target}_seed$seed")
    for method in popularity_"$target"_25pct popularity_"$target" similarity_"$target" \
                  similarity-popularity_"$target" random_"$target"; do b+=("E5_${method}_seed$seed"); done
    b+=("E3_lora_${target}_25pct_seed$seed" "E4_xlora_${target}_seed$seed")
    later+=("E3_xcross_${target}_25pct_seed$seed")
  done
  zero_shot=(E4_zero-shot_{Toys,Sports}_on_Tools E4_zero-shot_{Toys,Tools}_on_Sports E4_zero-shot_{Sports,Tools}_on_Toys)
  run "${a[@]}" &
  runner_a=$!
  run "${b[@]}"
  # The rest of B needs this seed's E1 adapters: retry while runner A is still making them.
  until run "${later[@]}" "${zero_shot[@]/%/_seed$seed}"; do
    kill -0 "$runner_a" 2>/dev/null || break
    sleep 60
  done
  wait "$runner_a"
done
