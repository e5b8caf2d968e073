"""The per-domain LoRA recommender: a PEFT LoRA adapter on the frozen base plus X-Cross's scoring head.

Saved as a PEFT adapter directory (adapter_config.json + adapter_model.safetensors, keys relative to the bare base
model, exactly what `XCrossForSequentialRecommendation.from_adapters` reads) plus `head.safetensors` and
`recommender.json`; such a directory is both a scoring model and a source adapter for X-Cross.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file
from torch import nn

from ..adapters import PEFT_PREFIX, load_lora_adapter
from ..checkpoint import atomic_save_dir, atomic_write, read_json, read_safetensors
from ..families import family_for
from ..head import RecommendationHead, check_inputs, pooled_positions
from ..modeling_xcross import XCrossRecommendationOutput, load_base_model
from ..packaged_models import canonical_model_name

HEAD_WEIGHTS_NAME = "head.safetensors"
RECOMMENDER_CONFIG_NAME = "recommender.json"


def load_peft_adapter(model: nn.Module, directory: str | Path, adapter_name: str = "default") -> PeftModel:
    """PEFT's `from_pretrained` (or `load_adapter` onto a PeftModel) after the checks of `load_lora_adapter`
    (readable files, weights of the declared rank), refusing weights that miss modules the config targets: PEFT
    would give those fresh LoRA weights and run a model nobody trained."""
    directory = Path(directory)
    saved = set(load_lora_adapter(directory.name, directory).weights)
    if isinstance(model, PeftModel):
        model.load_adapter(str(directory), adapter_name=adapter_name)
    else:
        model = PeftModel.from_pretrained(model, str(directory), adapter_name=adapter_name)
    targeted = {name.removeprefix(PEFT_PREFIX) for name, module in model.named_modules()
                if isinstance(module, LoraLayer) and adapter_name in module.lora_A}
    if targeted != saved:
        raise ValueError(f"{directory}: adapter_config.json targets {sorted(targeted - saved)[:4]}, which "
                         "adapter_model.safetensors has no weights for (target_modules edited?); restore the config "
                         "the adapter was saved with.")
    return model


class LoraRecommender(nn.Module):
    """`peft_model` is the encoder the head scores from: a PeftModel here, possibly a bare base in subclasses (the
    attribute keeps its name so that checkpoints of earlier runs still load)."""

    def __init__(self, peft_model: PeftModel, backbone: str):
        super().__init__()
        self.peft_model = peft_model
        self.backbone_name = backbone
        encoder = peft_model.get_base_model() if isinstance(peft_model, PeftModel) else peft_model
        config = encoder.config
        self.pooling = family_for(config.model_type).default_pooling
        self.head = RecommendationHead(config.hidden_size)

    @classmethod
    def create(cls, backbone: str, r: int = 8, lora_alpha: int = 16, target_modules: list[str] | None = None,
               seed: int = 0) -> "LoraRecommender":
        """A fresh recommender: new LoRA (query/value of the family by default) and head, seeded."""
        torch.manual_seed(seed)
        backbone = canonical_model_name(backbone)
        base = load_base_model(backbone)
        targets = list(target_modules or family_for(base.config.model_type).default_target_modules)
        lora = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=targets, lora_dropout=0.0)
        return cls(get_peft_model(base, lora), backbone)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "LoraRecommender":
        directory = Path(directory)
        settings = read_json(directory / RECOMMENDER_CONFIG_NAME)
        base = load_base_model(settings["backbone"])
        model = cls(load_peft_adapter(base, directory), settings["backbone"])
        model.head.load_state_dict(read_safetensors(directory / HEAD_WEIGHTS_NAME))
        return model.eval()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        check_inputs(input_ids, attention_mask, token_type_ids, labels)
        candidates_shape = input_ids.shape[:-1]
        flat = input_ids.reshape(-1, input_ids.shape[-1])
        mask = torch.ones_like(flat) if attention_mask is None else attention_mask.reshape(flat.shape)
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids.reshape(flat.shape)}
        hidden = self.peft_model(input_ids=flat, attention_mask=mask, **kwargs).last_hidden_state
        pooled = hidden[torch.arange(flat.shape[0], device=hidden.device), pooled_positions(mask, self.pooling)]
        logits = self.head(pooled).view(candidates_shape)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return XCrossRecommendationOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: str | Path) -> None:
        """The PEFT adapter, the head and the settings; every file written atomically."""
        directory = Path(directory)
        # PEFT records the local path the base was read from; keep the portable name instead.
        self.peft_model.peft_config["default"].base_model_name_or_path = self.backbone_name
        # Embeddings are frozen, so PEFT need not look the base up on the Hub to decide whether to save them. PEFT
        # writes in place; a kill then would leave a truncated adapter_config.json over a good one.
        atomic_save_dir(directory, lambda temporary: self.peft_model.save_pretrained(temporary,
                                                                                     save_embedding_layers=False))
        self.save_head(directory, {"kind": "lora-recommender"})

    def save_head(self, directory: Path, settings: dict) -> None:
        """The head weights and `recommender.json` (`settings` plus backbone and pooling)."""
        head = {key: value.contiguous() for key, value in self.head.state_dict().items()}
        atomic_write(directory / HEAD_WEIGHTS_NAME, lambda path: save_file(head, path))
        settings = {**settings, "backbone": self.backbone_name, "pooling": self.pooling}
        atomic_write(directory / RECOMMENDER_CONFIG_NAME, lambda path: path.write_text(json.dumps(settings, indent=2)))
