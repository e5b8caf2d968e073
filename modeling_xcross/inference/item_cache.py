"""The file a catalogue's item representations are cached in, which cannot lie: its safetensors metadata carries the
cache key (titles, model, tokenizer) and a sha256 of the tensor's bytes, and a read checks the tensor's shape and
dtype against what the model encodes. A file of other titles or another model, or one whose data was damaged with
its header kept, is reported once and encoded again instead of being used; writes are atomic, and the temporary file
of a write whose process was killed is removed at the next write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.utils import logging

from ..checkpoint import atomic_write

logger = logging.get_logger(f"transformers.{__name__}")

ITEMS_TENSOR = "items"


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
    digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_problem(tensor: torch.Tensor, metadata: dict, shape: tuple[int, int], dtype: torch.dtype) -> str | None:
    """What is wrong with a cached tensor whose key matched, or None: its shape or dtype is not what the model
    encodes the catalogue into, or its bytes are not those it was saved with."""
    if tuple(tensor.shape) != tuple(shape):
        return f"holds a tensor of shape {tuple(tensor.shape)}, not {tuple(shape)} (items, model width)"
    if tensor.dtype != dtype:
        return f"holds a tensor of dtype {tensor.dtype}, not the model's {dtype}"
    if metadata.get("sha256") != tensor_digest(tensor):
        return "holds data that does not match the digest it was saved with (the file was damaged)"
    return None


def read_item_cache(path: Path, key: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor | None:
    """The cached `shape` item representations of `key`, or None (with a warning saying why, for a file that exists)
    when the file is missing, unreadable, of another key or fails `cache_problem`."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as cache:
            metadata = cache.metadata() or {}
            if metadata.get("key") != key:
                logger.warning(f"{path} holds item representations of other titles or another model state; "
                               "encoding the catalogue again.")
                return None
            tensor = cache.get_tensor(ITEMS_TENSOR)
    except (OSError, SafetensorError) as error:
        logger.warning(f"{path} cannot be read ({error}); encoding the catalogue again.")
        return None
    problem = cache_problem(tensor, metadata, shape, dtype)
    if problem is not None:
        logger.warning(f"{path} {problem}; encoding the catalogue again.")
        return None
    return tensor


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the temporary files of writes whose process is gone (killed mid-write), which would otherwise stay
    for ever: `atomic_write` names them `.<name>.<pid>.<random>.tmp`. Only on POSIX, where signal 0 asks whether a
    process exists (on Windows it would send Ctrl-C)."""
    if os.name != "posix":
        return
    for temporary in directory.glob(".*.tmp"):
        pid = temporary.name.split(".")[-3]
        if pid.isdigit() and not _running(int(pid)):
            temporary.unlink(missing_ok=True)


def write_item_cache(path: Path, key: str, items: torch.Tensor) -> None:
    """Cache `items` under `key` with their digest, atomically, after removing stale temporaries beside it; a failed
    write only warns (they are encoded again next time)."""
    items = items.cpu().contiguous()
    metadata = {"key": key, "items": str(len(items)), "sha256": tensor_digest(items)}
    try:
        remove_stale_temporaries(path.parent)
        atomic_write(path, lambda temporary: save_file({ITEMS_TENSOR: items}, temporary, metadata=metadata))
    except OSError as error:
        logger.warning(f"Item representations not cached ({error}); they are encoded again next time.")
