#!/usr/bin/env bash
# The E1-E5 grid of an experiment config (default research/configs/dual_grid.json: the CLI's default dual scoring,
# three targets, seeds 42-44; any other, e.g. full_scale.json: the runs come from the config's plan) on a small
# machine: WORKERS runners (default 2) with THREADS threads each (default 1) take the runs from one ordered queue, each
# run claimed by one runner (a lock dir under runs/grid/claims/<config name>); a run whose source adapters are not
# ready yet is left for a later pass (a worker sleeps WAIT seconds, default 30, while every run left waits for one).
# Records go to the config's records_dir, logs to runs/grid/logs/; a rerun skips recorded runs and resumes stopped ones
# (remove runs/grid/claims first when the previous runners were killed). Then:
#   python -m research.report --config research/configs/dual_grid.json
#   [CONFIG=research/configs/dual_grid_long.json WORKERS=4] bash research/configs/dual_grid.sh [SEED ...]
#                                                                (default seeds: 42 43 44)
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
CONFIG=${CONFIG:-research/configs/dual_grid.json}
RECORDS=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["records_dir"])' "$CONFIG") || exit 1
CLAIMS=runs/grid/claims/$(basename "$CONFIG" .json)  # two configs may name the same run ids
export OMP_NUM_THREADS=${THREADS:-1}
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(42 43 44)
# The runs the config plans for these seeds (with the shared source adapters of its sources_seed), by id.
mapfile -t plan < <("$PYTHON" -m research.run_experiments --config "$CONFIG" --seeds "$(IFS=,; echo "${seeds[*]}")" \
  --dry-run | awk '{sub(/:$/, "", $2); print $2}')
[ ${#plan[@]} -gt 0 ] || { echo "$CONFIG plans no run for seeds ${seeds[*]}; check it with --dry-run" >&2; exit 1; }
# The queue's order is the priority, as far as a session's time reaches: every seed's E1 adapters, E2 X-Cross models
# and references first (the issue's first bars), then each seed's 25% X-Cross models, then the rest, and last every
# other run of the plan (other fractions) in plan order. Runs named here that the plan lacks are left out.
priority=()
for seed in "${seeds[@]}"; do
  priority+=(E1_lora_{Sports,Tools,Toys}_seed$seed E2_xcross_{Tools,Sports,Toys}_seed$seed
             E5_{best-reference,popularity,similarity,similarity-popularity}_{Tools,Sports,Toys}_seed$seed)
done
for seed in "${seeds[@]}"; do priority+=(E3_xcross_{Tools,Sports,Toys}_25pct_seed$seed); done
for seed in "${seeds[@]}"; do
  priority+=(E3_lora_{Tools,Sports,Toys}_25pct_seed$seed E5_popularity_{Tools,Sports,Toys}_25pct_seed$seed
             E5_random_{Tools,Sports,Toys}_seed$seed E4_xlora_{Tools,Sports,Toys}_seed$seed)
done
for seed in "${seeds[@]}"; do
  priority+=(E4_zero-shot_{Toys,Sports}_on_Tools_seed$seed E4_zero-shot_{Toys,Tools}_on_Sports_seed$seed
             E4_zero-shot_{Sports,Tools}_on_Toys_seed$seed)
done
for seed in "${seeds[@]}"; do priority+=(E4_{head,merged-sources}_{Tools,Sports,Toys}_seed$seed); done
declare -A planned queued
for id in "${plan[@]}"; do planned[$id]=1; done
queue=()
for id in "${priority[@]}" "${plan[@]}"; do
  [ -n "${planned[$id]:-}" ] && [ -z "${queued[$id]:-}" ] && queue+=("$id") && queued[$id]=1
done
worker() {
  # Take the first unclaimed run that can start; a run that failed keeps its claim (these runners do not retry it).
  while :; do
    local waiting=0
    for id in "${queue[@]}"; do
      [ -f "$RECORDS/$id.json" ] && continue
      mkdir "$CLAIMS/$id" 2>/dev/null || continue
      echo "[worker $1] $id (log: runs/grid/logs/$id.log)"
      nice "$PYTHON" -m research.run_experiments --config "$CONFIG" --runs "$id" > "runs/grid/logs/$id.log" 2>&1
      if grep -q "^\[blocked\]" "runs/grid/logs/$id.log"; then
        rmdir "$CLAIMS/$id"    # its source adapters are still being trained: a later pass takes it
        waiting=1
      else
        continue 2             # from the top again: the queue's order is the priority (seed after seed)
      fi
    done
    [ $waiting -eq 1 ] || return 0
    sleep "${WAIT:-30}"
  done
}
mkdir -p "$CLAIMS" runs/grid/logs
for number in $(seq "${WORKERS:-2}"); do worker "$number" & done
wait
