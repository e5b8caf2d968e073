"""The patched transformer block: the backbone's own block run on all n streams, then the X-Cross fusion head."""

from __future__ import annotations

import torch
from torch import nn


def other_domain_index(num_streams: int) -> torch.Tensor:
    """`(n, n-1)`: row m lists the other domains of m in increasing order (the order of the fusion head's `j`)."""
    return torch.tensor([[other for other in range(num_streams) if other != m] for m in range(num_streams)],
                        dtype=torch.long).view(num_streams, num_streams - 1)


def refine_streams(streams: torch.Tensor, fusion_weights: torch.Tensor, beta: float, gamma: float,
                   other_index: torch.Tensor) -> torch.Tensor:
    """The refine step of X-Cross, for every stream and token at once.

    h~_m = h_m + sum_j ( beta * z[m, 0, j] * h_o(m,j) + gamma * z[m, 1, j] * (h_m - h_o(m,j)) ),
    regrouped as one n x n mixing matrix per token: diagonal 1 + gamma * sum_j z[m, 1, j], off-diagonal
    beta * z[m, 0, j] - gamma * z[m, 1, j] at column o(m, j).

    Args:
        streams: `(n, tokens, d)` block outputs h_m.
        fusion_weights: `(tokens, n, 2, n-1)` the fusion head's z.
        other_index: `(n, n-1)` from `other_domain_index`.
    """
    scale, interaction = fusion_weights.unbind(dim=-2)
    mix = torch.diag_embed(1.0 + gamma * interaction.sum(dim=-1))
    mix = mix.scatter_add(-1, other_index.expand_as(scale), beta * scale - gamma * interaction)
    return torch.einsum("tmk,ktd->mtd", mix, streams)


class XCrossLayer(nn.Module):
    """One block of the backbone (a Llama decoder layer, a BERT encoder layer, ...) patched for X-Cross.

    The n adapter streams arrive stacked as `(n * batch, seq_len, d)` and go through the block together, so the
    frozen weights are shared and each `LoraBankLinear` inside applies adapter m to stream m. When the layer is
    integrated, its fusion head maps the per-token concatenation `[h_1; ...; h_n]` to z (`2n(n-1)` values: for
    each domain m, n-1 scales then n-1 interaction weights) and the streams are refined with beta and gamma.
    With `normalize_fusion_input`, the head reads every h_m scaled to unit root mean square per token (no weights),
    so the size of z does not depend on the backbone's activation scale (SmolLM2's hidden states reach L1 norms of
    6e4, and one optimizer step on the raw states sent z and the loss off); the refine step still mixes the raw h_m.
    With `scale_fusion_input` that input is also divided by sqrt(n * d) (unit L2 norm per token): unscaled, its n * d
    entries sum to about 500 in L1, so one Adam step on W moved z about 500 times as far as one on b and no single
    learning rate suited both. With `fusion_bound` c, z = c * tanh((W h + b) / c): the same z near zero (the identity
    at initialisation holds), and no step can send a stream's mixing weights beyond c.
    """

    def __init__(self, block: nn.Module, num_streams: int, hidden_size: int, integrated: bool, beta: float,
                 gamma: float, normalize_fusion_input: bool = False, scale_fusion_input: bool = False,
                 fusion_bound: float | None = None):
        super().__init__()
        self.block = block
        self.num_streams = num_streams
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.normalize_fusion_input = normalize_fusion_input
        self.fusion_input_scale = (num_streams * hidden_size) ** -0.5 if scale_fusion_input else None
        self.fusion_bound = None if fusion_bound is None else float(fusion_bound)
        self.fusion_head = None
        if integrated:
            weight = block.parameters().__next__()
            self.fusion_head = nn.Linear(num_streams * hidden_size, 2 * num_streams * (num_streams - 1),
                                         device=weight.device, dtype=weight.dtype)
            nn.init.zeros_(self.fusion_head.weight)
            nn.init.zeros_(self.fusion_head.bias)
            # Zero fusion makes every stream equal its source model; the base's initialiser must not touch it.
            self.fusion_head._is_hf_initialized = True
        self.register_buffer("other_index", other_domain_index(num_streams), persistent=False)

    def forward(self, hidden_states: torch.Tensor, **block_kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the refined streams `(n * batch, seq_len, d)` and z `(batch, seq_len, n, 2, n-1)` (None when
        the layer is not integrated)."""
        return self.fuse(self.block(hidden_states, **block_kwargs))

    def fuse(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The integration step alone, on block outputs stacked `(n * batch, seq_len, d)`; separate from `forward`
        so that other ways of running the streams (see `benchmarks/`) fuse exactly as the model does."""
        if self.fusion_head is None:
            return hidden_states, None
        n, hidden_size = self.num_streams, hidden_states.shape[-1]
        streams = hidden_states.reshape(n, -1, hidden_size)
        # z = W [h_1; ...; h_n] + b, computed as the sum over streams of h_m times W's m-th column block, so the
        # streams are never copied side by side.
        weight_blocks = self.fusion_head.weight.view(-1, n, hidden_size).permute(1, 2, 0)
        inputs = streams
        if self.normalize_fusion_input:
            inputs = streams * torch.rsqrt(streams.float().pow(2).mean(dim=-1, keepdim=True) + 1e-6).to(streams.dtype)
        if self.fusion_input_scale is not None:
            inputs = inputs * self.fusion_input_scale
        fusion_weights = torch.bmm(inputs, weight_blocks).sum(dim=0) + self.fusion_head.bias
        if self.fusion_bound is not None:
            fusion_weights = self.fusion_bound * torch.tanh(fusion_weights / self.fusion_bound)
        fusion_weights = fusion_weights.view(-1, n, 2, n - 1)
        refined = refine_streams(streams, fusion_weights, self.beta, self.gamma, self.other_index)
        return refined.reshape(hidden_states.shape), fusion_weights.view(-1, *hidden_states.shape[1:-1], n, 2, n - 1)
