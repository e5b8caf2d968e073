"""The standard `from_pretrained` keyword arguments, read once for every model of the package (X-Cross and the
recommenders): which reach the Hub, which are accepted and ignored as transformers 5 does, which cannot apply, and
the one device a `device_map` names (the models run their streams or encoder on one device)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download

HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")
# The subset that also applies to the base model and the adapters a checkpoint refers to (each has its own revision).
DOWNLOAD_KWARGS = ("cache_dir", "force_download", "local_files_only", "token")
# The Hub arguments `snapshot_download` takes.
SNAPSHOT_KWARGS = ("cache_dir", "force_download", "local_files_only", "revision", "token")
# Arguments the Auto classes pass along, and `low_cpu_mem_usage`, which transformers 5 accepts and ignores too.
IGNORED_LOAD_KWARGS = ("trust_remote_code", "_from_auto", "adapter_kwargs", "code_revision", "_commit_hash",
                       "low_cpu_mem_usage")
# Standard `from_pretrained` arguments that cannot apply, with the reason given to the caller.
UNSUPPORTED_LOAD_KWARGS = {
    "quantization_config": "the frozen base is loaded by X-Cross itself, unquantized",
    "gguf_file": "an X-Cross checkpoint is safetensors; convert a GGUF base first (python -m conversion.gguf_to_hf)",
    "variant": "an X-Cross checkpoint has a single model.safetensors",
    "tp_plan": "the n stacked adapter streams run on one device",
    "tp_size": "the n stacked adapter streams run on one device",
    "device_mesh": "the n stacked adapter streams run on one device",
    "max_memory": "the whole model goes to one device (device_map='auto' picks it)",
    "offload_folder": "the whole model goes to one device (device_map='auto' picks it)",
    "offload_buffers": "the whole model goes to one device (device_map='auto' picks it)",
    "key_mapping": "X-Cross checkpoint keys are fixed by the model",
    "from_tf": "X-Cross checkpoints are safetensors only",
    "from_flax": "X-Cross checkpoints are safetensors only",
}


@dataclass(frozen=True)
class LoadOptions:
    """What the standard arguments of one `from_pretrained` call ask for."""

    hub_kwargs: dict
    dtype: torch.dtype
    device: torch.device | None

    @property
    def download_kwargs(self) -> dict:
        """The Hub arguments that also reach the base model and the adapters a checkpoint refers to."""
        return {key: value for key, value in self.hub_kwargs.items() if key in DOWNLOAD_KWARGS}

    @classmethod
    def take(cls, kwargs: dict, model_name: str, dtype: torch.dtype | str | None = None,
             device_map: str | int | torch.device | dict | None = None) -> "LoadOptions":
        """Read (and remove) the standard arguments from `kwargs`, refusing those that cannot apply; what is left
        are config overrides or unknown arguments."""
        unsupported = sorted(set(kwargs) & set(UNSUPPORTED_LOAD_KWARGS))
        if unsupported:
            raise ValueError(f"{model_name} from_pretrained does not support `{unsupported[0]}`: "
                             f"{UNSUPPORTED_LOAD_KWARGS[unsupported[0]]}.")
        device = single_device(device_map)
        dtype = kwargs.pop("torch_dtype", None) if dtype is None else dtype
        dtype = torch.float32 if dtype in (None, "auto") else getattr(torch, dtype) if isinstance(dtype, str) else dtype
        hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
        for key in IGNORED_LOAD_KWARGS:
            kwargs.pop(key, None)
        return cls(hub_kwargs, dtype, device)


def _as_device(value: str | int | torch.device) -> torch.device:
    return torch.device("cuda", value) if isinstance(value, int) else torch.device(value)


def single_device(device_map: str | int | torch.device | dict | None) -> torch.device | None:
    """The one device a `device_map` names: X-Cross runs its n streams stacked, so it is never split."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        devices = {_as_device(value) for value in device_map.values()}
        if len(devices) != 1:
            raise ValueError(f"device_map {device_map} splits the model over {sorted(map(str, devices))}; X-Cross runs "
                             "its stacked adapter streams on one device: pass one device ('cuda:0', 'cpu' or 'auto').")
        return devices.pop()
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_map in ("balanced", "balanced_low_0", "sequential"):
        raise ValueError(f"device_map={device_map!r} spreads the model over devices; X-Cross runs its stacked "
                         "adapter streams on one device: pass 'auto' or a device.")
    return _as_device(device_map)


def saved_directory(name_or_path: str | os.PathLike, hub_kwargs: dict) -> Path:
    """The local directory a saved model lives in: `name_or_path` (plus `subfolder`) when it is a directory, else a
    snapshot of the Hub repo it names (with `revision`, `token`, `cache_dir`, `local_files_only`, `force_download`),
    for models whose files are read as a directory (a recommender holds a PEFT adapter beside its weights)."""
    subfolder = hub_kwargs.get("subfolder") or ""
    if Path(name_or_path).is_dir():
        return Path(name_or_path) / subfolder
    snapshot = snapshot_download(str(name_or_path), allow_patterns=f"{subfolder}/*" if subfolder else None,
                                 **{key: value for key, value in hub_kwargs.items() if key in SNAPSHOT_KWARGS})
    return Path(snapshot) / subfolder
