"""Reading PEFT LoRA adapters (a local directory or a Hub repo) into plain tensors for the adapter bank."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from peft import LoraConfig, PeftConfig
from peft.utils import load_peft_weights
from transformers.utils.hub import extract_commit_hash

from configuration_xcross import AdapterSpec

from .checkpoint import read_json, read_safetensors
from .errors import CheckpointError

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

# LoRA features the bank does not reproduce; an adapter using any of them is refused rather than run wrongly. The
# allowed values are PEFT's defaults, and what older adapter_config.json files hold.
_UNSUPPORTED_SETTINGS = {
    "use_dora": (False, None),
    "lora_bias": (False, None),
    "fan_in_fan_out": (False, None),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "layers_to_transform": (None,),
    "layer_replication": (None,),
    "exclude_modules": (None,),
    "target_parameters": (None, []),
    "trainable_token_indices": (None,),
}


@dataclass
class LoraAdapter:
    """A LoRA adapter as the bank needs it: its settings and `{module path: (A (r, in), B (out, r))}`.

    Module paths are relative to whatever model PEFT wrapped (PEFT's `base_model.model.` prefix removed); the
    bank matches them to the base model's modules by suffix.
    """

    spec: AdapterSpec
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    base_model_name_or_path: str | None = None


def _adapter_files(source: str, revision: str | None, **hub_kwargs) -> tuple[Path, Path, str | None]:
    """The adapter's config and weights files, and the commit they come from when `source` is a Hub repo."""
    local = Path(source)
    if local.is_dir():
        files = (local / ADAPTER_CONFIG_NAME, local / ADAPTER_WEIGHTS_NAME)
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{local} is not a PEFT LoRA adapter directory: {path.name} is missing. Save adapters with "
                    f"`peft_model.save_pretrained(dir)` (safetensors), which writes {ADAPTER_CONFIG_NAME} and "
                    f"{ADAPTER_WEIGHTS_NAME}."
                )
        return (*files, revision)
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"Adapter directory {source} does not exist, and it is not a Hub repo id "
                                "('org/name').")
    try:
        config_file = hf_hub_download(source, ADAPTER_CONFIG_NAME, revision=revision, **hub_kwargs)
        # Both files from the same commit, even if the branch moves in between.
        commit = extract_commit_hash(config_file, None) or revision
        weights_file = hf_hub_download(source, ADAPTER_WEIGHTS_NAME, revision=commit, **hub_kwargs)
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise OSError(f"Cannot read the PEFT LoRA adapter from Hub repo {source!r} at revision {revision or 'main'}: "
                      f"{type(error).__name__}: {str(error).splitlines()[0]} Check the repo id and revision, or pass "
                      "a local adapter directory.") from error
    return Path(config_file), Path(weights_file), commit


def _check_supported(name: str, peft_config: PeftConfig) -> None:
    if not isinstance(peft_config, LoraConfig):
        raise CheckpointError(f"Adapter {name!r} is a {peft_config.peft_type.value} adapter; X-Cross integrates LoRA "
                              "adapters only.")
    for key, allowed in _UNSUPPORTED_SETTINGS.items():
        value = getattr(peft_config, key, None)
        if value not in allowed:
            raise CheckpointError(f"Adapter {name!r} sets {key}={value!r}, which the X-Cross adapter bank does not "
                                  f"support; train the source adapter with the default {key}={allowed[0]!r}.")


def load_lora_adapter(name: str, source: str | os.PathLike, revision: str | None = None, **hub_kwargs) -> LoraAdapter:
    """Read a PEFT LoRA adapter from a directory or Hub repo id (safetensors only, never pickles) with PEFT's own
    readers (`PeftConfig.from_pretrained`, `load_peft_weights`).

    A Hub revision (branch, tag) is resolved to its commit, which the returned spec records, so a model built from
    it keeps pointing at the exact adapter weights.
    """
    source = str(source)
    config_file, weights_file, revision = _adapter_files(source, revision, **hub_kwargs)
    read_json(config_file)  # a damaged file is named before PEFT parses it
    peft_config = PeftConfig.from_pretrained(str(config_file.parent))
    _check_supported(name, peft_config)
    # The folder holds the safetensors file (checked or downloaded above), which load_peft_weights prefers.
    tensors = read_safetensors(weights_file, lambda path: load_peft_weights(str(Path(path).parent), device="cpu"))

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        key = key.removeprefix(PEFT_PREFIX)
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module_path = key.split(marker)[0]
                pairs.setdefault(module_path, {})[part] = tensor
    if not pairs:
        raise CheckpointError(f"Adapter {name!r} ({weights_file}) holds no LoRA weights (no '.lora_A.' keys).")
    incomplete = sorted(path for path, pair in pairs.items() if len(pair) != 2)
    if incomplete:
        raise CheckpointError(f"Adapter {name!r} has lora_A without lora_B (or the reverse) for {incomplete}.")

    ranks = {pair["lora_A"].shape[0] for pair in pairs.values()}
    if ranks != {peft_config.r}:
        raise CheckpointError(f"Adapter {name!r}: {config_file} declares r={peft_config.r} but its weights have ranks "
                              f"{sorted(ranks)}; restore the config the adapter was saved with.")
    targets = peft_config.target_modules
    spec = AdapterSpec(
        name=name,
        r=int(peft_config.r),
        lora_alpha=peft_config.lora_alpha,
        # PEFT holds a list as a set; sorted, so that configs do not depend on set order.
        target_modules=targets if isinstance(targets, str) else sorted(targets),
        source=source,
        revision=revision,
        use_rslora=bool(peft_config.use_rslora),
    )
    weights = {path: (pair["lora_A"], pair["lora_B"]) for path, pair in sorted(pairs.items())}
    return LoraAdapter(spec=spec, weights=weights, base_model_name_or_path=peft_config.base_model_name_or_path)
