"""What an X-Cross checkpoint holds, and writing it atomically.

A checkpoint directory holds `config.json` and `model.safetensors`. The weights file always has the trained
integrator (fusion heads, domain weights, scoring head) and, by default, the frozen adapter bank (the LoRA A/B of
every source adapter: small, and it frees the checkpoint from the adapter sources). It refers to the base model by
`base_model_name_or_path` and `base_model_revision` instead of copying it, unless saved with `include_base=True`.
`save_pretrained` also writes the flat remote-code files and the base's tokenizer beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError

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


def _new_file(directory: Path, name: str) -> Path:
    """A new, empty, uniquely named file with the permissions `open(path, "w")` gives: 0o666 less the umask."""
    path = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return path


def _plain_write_mode(target: Path, new_file: Path) -> int:
    """The permissions a plain write of `target` leaves: those of the file it replaces, else a new file's."""
    return stat.S_IMODE((target if target.exists() else new_file).stat().st_mode)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file in the same directory and rename it into place, so a crash never
    leaves a half-written file behind. The file gets the permissions a plain write would give it (safetensors
    replaces the file it writes with one of mode 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_file(path.parent, path.name)
    try:
        mode = _plain_write_mode(path, temporary)
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_save_dir(directory: Path, save: Callable[[Path], None]) -> None:
    """Run `save` (a library's `save_pretrained`, which writes its files in place) into a temporary directory inside
    `directory`, then rename each file it wrote into place, with the permissions a plain write would give: a crash
    leaves every file whole, the old or the new one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".saving-", dir=directory))
    try:
        new_file = _new_file(temporary, "mode")
        save(temporary / "files")
        for written in sorted(path for path in (temporary / "files").rglob("*") if path.is_file()):
            target = directory / written.relative_to(temporary / "files")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(written, _plain_write_mode(target, new_file))
            os.replace(written, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object file, turning a damaged one (truncated, edited) into an error that names it."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): it is truncated or damaged. Restore it, or write "
                              "it again with the command that made this directory.") from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(content).__name__}.")
    return content


def read_safetensors(path: str | os.PathLike, load: Callable[[str | os.PathLike], dict] = load_file
                     ) -> dict[str, torch.Tensor]:
    """Load a safetensors file (with `load`, safetensors' `load_file` by default), turning a damaged one into an
    error that says what to do."""
    try:
        return load(path)
    except SafetensorError as error:
        raise OSError(f"{path} is not a valid safetensors file ({error}): it is truncated or corrupted. Download it "
                      "again (from_pretrained(..., force_download=True)) or save / push it again.") from error
