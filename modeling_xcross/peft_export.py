"""Writing the adapters of an X-Cross bank back out as standard PEFT LoRA adapter directories.

A published X-Cross model can then point at its adapters by repo id, and anyone can load each source adapter on its
own with `PeftModel.from_pretrained(base, dir_or_repo)`. Keys are relative to the bare base model, as PEFT writes
them for an adapter trained on `AutoModel` (`base_model.model.<module>.lora_A.weight`).
"""

from __future__ import annotations

import os
from pathlib import Path

from peft import LoraConfig
from safetensors.torch import save_file

from .adapters import ADAPTER_WEIGHTS_NAME, PEFT_PREFIX
from .checkpoint import atomic_write


def adapter_state(model, name: str) -> dict:
    """`{PEFT key: tensor}` of adapter `name`, unpadded."""
    if name not in model.adapter_names:
        raise KeyError(f"No adapter {name!r} in this model; it has {model.adapter_names}.")
    index = model.adapter_names.index(name)
    tensors = {}
    for module, bank in model.lora_banks.items():
        lora_A, lora_B = bank.get_adapter(index)
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = lora_A.detach().float().contiguous().clone()
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = lora_B.detach().float().contiguous().clone()
    return tensors


def adapter_config(model, name: str) -> LoraConfig:
    """The PEFT config of adapter `name`, with the settings the bank applies."""
    spec = model.config.adapter_specs[model.adapter_names.index(name)]
    return LoraConfig(base_model_name_or_path=model.config.base_model_name_or_path,
                      revision=model.config.base_model_revision, r=spec.r, lora_alpha=spec.lora_alpha,
                      target_modules=spec.target_modules, use_rslora=spec.use_rslora, lora_dropout=0.0,
                      inference_mode=True)


def export_adapter(model, name: str, directory: str | os.PathLike) -> Path:
    """Write adapter `name` of `model`'s bank to `directory` as a PEFT LoRA adapter: the weights (safetensors,
    atomically), then the adapter_config.json PEFT writes (with its `peft_version`)."""
    directory = Path(directory)
    tensors = adapter_state(model, name)
    atomic_write(directory / ADAPTER_WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    adapter_config(model, name).save_pretrained(directory)
    return directory


def export_adapters(model, output_dir: str | os.PathLike) -> dict[str, Path]:
    """Every adapter of the bank, each in `output_dir/<name>`."""
    return {name: export_adapter(model, name, Path(output_dir) / name) for name in model.adapter_names}
