"""The scoring head shared by X-Cross and the per-domain LoRA recommenders: pool one token, then score it."""

from __future__ import annotations

import torch
from torch import nn


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
