"""The scoring head shared by X-Cross and the per-domain LoRA recommenders: pool one token, then score it."""

from __future__ import annotations

import torch
from torch import nn


def check_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> None:
    """Refuse what a recommender would otherwise reshape or index silently wrong, or fail on without saying why."""
    if input_ids.dim() not in (2, 3):
        raise ValueError(f"input_ids must be (batch, num_candidates, seq_len) or (batch, seq_len), got shape "
                         f"{tuple(input_ids.shape)}.")
    if input_ids.numel() == 0:
        raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): a batch needs at least one prompt of "
                         "at least one token.")
    for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, but input_ids {tuple(input_ids.shape)}: "
                             "they must have the same shape.")
    if labels is None:
        return
    if input_ids.dim() != 3:
        raise ValueError("labels index the true candidate, so input_ids must be (batch, num_candidates, seq_len).")
    batch, num_candidates = input_ids.shape[:2]
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape (batch,) = ({batch},), got {tuple(labels.shape)}.")
    if labels.min() < 0 or labels.max() >= num_candidates:
        raise ValueError(f"labels must be candidate indices from 0 to {num_candidates - 1}, got {labels.tolist()}.")


def pooled_positions(attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Index of the token each sequence is represented by: the first (`"cls"`) or the last non-padding (`"last"`,
    correct for both left and right padding)."""
    if pooling == "cls":
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=-1)


class RecommendationHead(nn.Module):
    """score(S_u, i) = v^T GELU(W_p h + b_p) + c, on the pooled hidden state h of the (history, candidate) prompt."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.GELU()
        self.score = nn.Linear(hidden_size, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.score(self.activation(self.pooler(pooled))).squeeze(-1)
