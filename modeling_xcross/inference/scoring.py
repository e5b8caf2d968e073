"""Scores of fixed candidate lists in either scoring form: the evaluation on sampled lists and the re-ranking stage
of catalogue recommendation both score through here."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .encoding import dual_scores, model_device


@torch.no_grad()
def candidate_scores(model, collator, examples: list[dict], batch_size: int) -> torch.Tensor:
    """`(examples, candidates)` float scores, on the CPU, of examples `{"history", "candidates", "label"}` (lists of
    one length). Dual scoring encodes every distinct title once; X-Cross on a decoder runs each history prefix once
    (`score_shared_prefix`, same scores)."""
    model.eval()
    if collator.scoring == "dual":
        return dual_scores(model, collator, examples).float()
    shared_prefix = getattr(model, "supports_shared_prefix", False) and not collator.text_pair
    device = model_device(model)
    scores = []
    for start in tqdm(range(0, len(examples), batch_size), desc="scoring", unit="batch"):
        batch = examples[start:start + batch_size]
        inputs = collator.shared_prefix_batch(batch) if shared_prefix else collator(batch)
        inputs.pop("labels")
        inputs = {key: value.to(device) for key, value in inputs.items()}
        scores.append((model.score_shared_prefix(**inputs) if shared_prefix else model(**inputs)).logits.float().cpu())
    return torch.cat(scores)
