"""Publishing an X-Cross model to the Hub: what the repo holds, its model card, and the upload.

The repo is an ordinary transformers repo: what `save_pretrained` writes (`config.json` with `auto_map`, so
`trust_remote_code=True` works where the package is not installed, `model.safetensors`, the generated flat code files,
the tokenizer) and `README.md`. The base and the
adapters are referred to by repo id and commit when they came from the Hub, so the repo stays small and still loads
the exact weights it was trained with.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData

from .errors import XCrossError
from .packaged_models import PACKAGED_MODELS

_COMMIT = re.compile(r"[0-9a-f]{40}")


def is_pinned_hub_reference(source: str | None, revision: str | None) -> bool:
    """A Hub repo id with a recorded commit: something a published repo can refer to instead of copying."""
    return bool(source) and not Path(source).exists() and bool(revision and _COMMIT.fullmatch(revision))


def _base_is_referable(config) -> bool:
    name = config.base_model_name_or_path
    return name in PACKAGED_MODELS or is_pinned_hub_reference(name, config.base_model_revision)


def _adapters_are_referable(config) -> bool:
    return all(is_pinned_hub_reference(spec.source, spec.revision) for spec in config.adapter_specs)


def model_card(config, repo_id: str, *, base_included: bool, adapters_included: bool,
               metrics: Mapping[str, float] | None = None) -> ModelCard:
    """A card that says what the model is made of, how it was fused, how well it does, and how to load it."""
    base = config.base_model_name_or_path
    data = ModelCardData(library_name="transformers", tags=["x-cross", "recommendation", "lora", "peft"],
                         base_model=None if base_included else base)
    base_row = "included in this repo" if base_included else f"referenced at revision `{config.base_model_revision}`"
    adapter_rows = "\n".join(
        f"| {spec.name} | `{spec.source}` | `{spec.revision}` | {spec.r} | {spec.lora_alpha} | {spec.target_modules} |"
        for spec in config.adapter_specs)
    metric_rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in (metrics or {}).items())
    body = f"""
# {repo_id}

X-Cross (SIGIR 2025) cross-domain sequential recommender: {config.num_adapters} domain LoRA adapters of a frozen base
model, integrated layer by layer by a small trained integrator.

## Base model

`{base}`, {base_row}.

## Source adapters (bank order, {"stored in this repo" if adapters_included else "loaded from their repos"})

| name | source | revision | r | lora_alpha | target modules |
| --- | --- | --- | --- | --- | --- |
{adapter_rows}

## Integration

beta = {config.beta}, gamma = {config.gamma}, integrated layers: {config.integrated_layers or "all"},
pooling: {config.pooling or "the backbone's default"}.

## Prompt format

Encoder bases read the pair (history, candidate), decoder bases the text
`{{decoder_prefix}} {{history}}{{decoder_suffix}}{{candidate}}`; history titles, oldest first, are joined by the
separator, and the oldest history tokens are cut first beyond `max_length` = {config.max_length} tokens. Settings
(`prompt` in config.json): `{config.prompt}`. The tokenizer is in this repo (`AutoTokenizer.from_pretrained`).

## Metrics

{f"| metric | value |{chr(10)}| --- | --- |{chr(10)}{metric_rows}" if metric_rows else "Not evaluated."}

## How to load

```python
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)  # code from this repo (needs peft)
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)
# the catalogue's best items for each history (titles, oldest first), read with this repo's tokenizer
top = model.recommend([["first title", "second title"]], ["a title", "another title", "a third"], top_k=2)
# or, with the xcross-rec package installed (pip install xcross-rec): `import modeling_xcross` first, and no trust_remote_code
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def push_xcross(model, repo_id: str, *, self_contained: bool = False, include_adapters: bool | None = None,
                metrics: Mapping[str, float] | None = None, commit_message: str = "Upload X-Cross model",
                revision: str | None = None, private: bool | None = None, token: str | None = None) -> CommitInfo:
    """See `XCrossForSequentialRecommendation.push_to_hub`."""
    config = model.config
    include_base = self_contained or not _base_is_referable(config)
    if include_adapters is None:
        include_adapters = self_contained or not _adapters_are_referable(config)
    elif not include_adapters and not _adapters_are_referable(config):
        raise XCrossError("include_adapters=False needs every adapter to come from a Hub repo at a recorded commit; "
                          f"sources here: {[(s.source, s.revision) for s in config.adapter_specs]}. Publish them "
                          "first (conversion/export_adapters.py) and build the model from their repo ids.")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        model.save_pretrained(directory, include_base=include_base, include_adapters=include_adapters)
        model_card(config, repo_id, base_included=include_base, adapters_included=include_adapters,
                   metrics=metrics).save(directory / "README.md")
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=directory, commit_message=commit_message,
                                 revision=revision)
