"""The typed results of the X-Cross models: what `XCrossModel` and `XCrossForSequentialRecommendation` return, and the
integrator's size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class XCrossModelOutput(ModelOutput):
    """
    Output of [`XCrossModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(n, sequences, seq_len, hidden_size)`): Every stream after the
            last block, before the domain weights and the base's final norm (`XCrossModel.pool_streams` applies them).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): The embeddings then one entry per block, each of shape
            `(n, sequences, seq_len, hidden_size)`.
        fusion_weights (`tuple(torch.FloatTensor)`, *optional*): The z of every integrated block, each of shape
            `(sequences, seq_len, n, 2, n - 1)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fusion_weights: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XCrossRecommendationOutput(ModelOutput):
    """
    Output of [`XCrossForSequentialRecommendation`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): Softmax cross-entropy over the candidates, when
            `labels` is given.
        logits (`torch.FloatTensor` of shape `(batch, num_candidates)`, or `(batch,)` for 2-D inputs): Scores.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): The embeddings then one entry per block, each of shape
            `(n, batch * num_candidates, seq_len, hidden_size)`: the refined state of every stream.
        fusion_weights (`tuple(torch.FloatTensor)`, *optional*): The z of every integrated block, each of shape
            `(batch * num_candidates, seq_len, n, 2, n - 1)`: `[..., m, 0, j]` the scale of domain m for its j-th
            other domain, `[..., m, 1, j]` the matching interaction weight.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fusion_weights: tuple[torch.FloatTensor, ...] | None = None


@dataclass(frozen=True)
class IntegratorSize:
    """The integrator's parameter count against one LoRA adapter of the given rank and targets (heads excluded)."""

    fusion_weights: int
    fusion_biases: int
    domain_weights: int
    lora_parameters: int

    @property
    def ratio(self) -> float:
        """Fusion weight matrices / LoRA parameters: the paper's 25% at n=2, r=8 on query and value."""
        return self.fusion_weights / self.lora_parameters

    @property
    def ratio_with_biases(self) -> float:
        return (self.fusion_weights + self.fusion_biases + self.domain_weights) / self.lora_parameters
