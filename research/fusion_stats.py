"""How much each source domain draws on the others, layer by layer, in a trained X-Cross: the mean |z| of the
cross-domain scales and interaction weights (`forward(output_fusion_weights=True)`) over the non-padding tokens of a
sample of test prompts (with dual scoring, the history prompts)."""

from __future__ import annotations

from pathlib import Path

import torch

from modeling_xcross.pipeline.candidates import eval_lists_for
from modeling_xcross.pipeline.data import load_domain, split_users
from modeling_xcross.auto_loading import load_popularity, load_trained_model
from modeling_xcross.inference.model_inputs import collator_settings
from modeling_xcross.pipeline.models import collator_for
from modeling_xcross.pipeline.samples import EvalSamples


@torch.no_grad()
def fusion_contributions(model_dir: str | Path, data_dir: str | Path, domain_name: str, users: int, seed: int,
                         max_length: int, batch_size: int = 4) -> dict:
    """{"adapters", "pairs": ["a->b", ...], "scale" and "interaction": [layer][pair] mean |z|} on `users` test users."""
    model, backbone = load_trained_model(model_dir)
    domain = load_domain(data_dir, domain_name)
    chosen = split_users(domain, 1, seed, max_test_users=users)["test"]
    path = Path(model_dir) / f"eval_{domain_name}_test" / f"candidates_test_{len(chosen)}users_seed{seed}.json"
    path.parent.mkdir(exist_ok=True)
    popularity = load_popularity(model_dir) if model.config.popularity_weight is not None else None
    samples = EvalSamples(domain, eval_lists_for(domain, "test", chosen, seed, path), popularity)
    collator = collator_for(backbone, max_length, domain.titles.values(), **collator_settings(model))
    totals, tokens = None, 0
    for start in range(0, len(samples), batch_size):
        batch = collator([samples[index] for index in range(start, min(start + batch_size, len(samples)))])
        batch.pop("labels")
        mask = batch["attention_mask"].reshape(-1, batch["attention_mask"].shape[-1]).bool()
        layers = model(**batch, output_fusion_weights=True).fusion_weights  # each (rows, seq, n, 2, n-1)
        sums = torch.stack([z[mask].abs().sum(0) for z in layers])  # (layers, n, 2, n-1)
        totals = sums if totals is None else totals + sums
        tokens += int(mask.sum())
    means = totals / tokens
    names = model.adapter_names
    pairs = [(m, [other for other in range(len(names)) if other != m]) for m in range(len(names))]
    labels = [f"{names[m]}->{names[other]}" for m, others in pairs for other in others]

    def per_layer(kind: int) -> list[list[float]]:
        return [[float(layer[m, kind, j]) for m, others in pairs for j in range(len(others))] for layer in means]

    return {"adapters": names, "pairs": labels, "scale": per_layer(0), "interaction": per_layer(1),
            "num_users": len(chosen), "num_tokens": tokens}
