"""The backbones the benchmark runs on, with n random-but-trained-looking PEFT LoRA adapters written next to them."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModel, BertConfig, LlamaConfig

from modeling_xcross import DEFAULT_BACKBONE, resolve_model_path

# name -> (config to build a random base from, or None for the real packaged model; LoRA target modules)
BACKBONES = {
    "minilm": (None, ["query", "value"]),
    "llama": (LlamaConfig(vocab_size=2000, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                          use_cache=False), ["q_proj", "v_proj"]),
    "tiny-bert": (BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=48, max_position_embeddings=160), ["query", "value"]),
    "tiny-llama": (LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=160,
                               pad_token_id=0, use_cache=False), ["q_proj", "v_proj"]),
}
LORA_RANK = 8


def prepare_backbone(name: str, num_adapters: int, directory: Path) -> tuple[str, dict[str, str], int]:
    """The base model path, `num_adapters` PEFT LoRA adapter dirs (rank 8, non-zero B so they change the output),
    and the vocabulary size to draw token ids from. Each is seeded by its index, so what `directory` already holds
    is reused."""
    config, targets = BACKBONES[name]
    if config is None:
        base_dir = resolve_model_path(DEFAULT_BACKBONE)
    else:
        base_dir = str(directory / "base")
        if not (directory / "base" / "config.json").exists():
            torch.manual_seed(0)
            AutoModel.from_config(config).save_pretrained(base_dir)
    adapters = write_adapters(base_dir, targets, num_adapters, directory)
    return base_dir, adapters, AutoConfig.from_pretrained(base_dir).vocab_size


def write_adapters(base_dir: str, targets: list[str], num_adapters: int, directory: Path) -> dict[str, str]:
    """`num_adapters` PEFT LoRA adapter dirs of `base_dir` in `directory` (rank 8, random non-zero A and B), each
    seeded by its index; those `directory` already holds are kept."""
    adapters = {f"domain{index}": str(directory / f"domain{index}") for index in range(num_adapters)}
    for index, adapter_dir in enumerate(adapters.values()):
        if (Path(adapter_dir) / "adapter_config.json").exists():
            continue
        torch.manual_seed(index + 1)
        peft_model = get_peft_model(AutoModel.from_pretrained(base_dir),
                                    LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=targets,
                                               init_lora_weights=False))
        peft_model.save_pretrained(adapter_dir)
    return adapters
