"""What an X-Cross checkpoint holds, and writing it atomically.

A checkpoint directory holds `config.json` and `model.safetensors`. The weights file always has the trained
integrator (fusion heads, domain weights, scoring head) and, by default, the frozen adapter bank (the LoRA A/B of
every source adapter: small, and it frees the checkpoint from the adapter sources). It refers to the base model by
`base_model_name_or_path` and `base_model_revision` instead of copying it, unless saved with `include_base=True`.
`save_pretrained` also writes the flat remote-code files and the base's tokenizer beside them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class WeightGroup(str, Enum):
    INTEGRATOR = "integrator"
    ADAPTERS = "adapters"
    BASE = "base"


def weight_group(key: str) -> WeightGroup:
    """Which part of the model a state-dict key belongs to."""
    if key == "domain_weights" or key.startswith("head.") or ".fusion_head." in key:
        return WeightGroup.INTEGRATOR
    if key.endswith((".lora_A", ".lora_B")):
        return WeightGroup.ADAPTERS
    return WeightGroup.BASE


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file in the same directory and rename it into place, so a crash never
    leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_safetensors(path: str | os.PathLike, load: Callable[[str | os.PathLike], dict] = load_file
                     ) -> dict[str, torch.Tensor]:
    """Load a safetensors file (with `load`, safetensors' `load_file` by default), turning a damaged one into an
    error that says what to do."""
    try:
        return load(path)
    except SafetensorError as error:
        raise OSError(f"{path} is not a valid safetensors file ({error}): it is truncated or corrupted. Download it "
                      "again (from_pretrained(..., force_download=True)) or save / push it again.") from error
