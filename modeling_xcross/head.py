"""Pooling and the two scoring forms shared by X-Cross and the per-domain LoRA recommenders.

`"cross"` (the paper's form): one (history, candidate) prompt per candidate, pooled and read by a trained head.
`"dual"`: the history and each candidate text are encoded separately and the score is their cosine similarity over a
learned temperature, so an untrained model already ranks by the backbone's sentence similarity. A history is one
prompt of its titles, or (`history_encoding="items"`) the recency-weighted mean of its titles' representations, the
same representations candidates get. An optional learned popularity prior adds w * log(1 + count) per candidate, and
an optional fixed centre is subtracted from every representation before the cosine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# The largest logit scale (1 / temperature) dual scoring may learn, as in CLIP: beyond it the softmax saturates.
MAX_LOGIT_SCALE = 100.0


def pooled_positions(attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Index of the token each sequence is represented by: the first (`"cls"`) or the last non-padding (`"last"`,
    correct for both left and right padding)."""
    if pooling == "cls":
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=-1)


def pool_hidden_states(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """`(..., sequences, seq_len, d)` -> `(..., sequences, d)`: one token (`"cls"`, `"last"`) or the mean over the
    non-padding tokens (`"mean"`); leading dimensions (e.g. the n streams) share the `(sequences, seq_len)` mask."""
    if pooling == "mean":
        mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * mask).sum(dim=-2) / mask.sum(dim=-2).clamp(min=1.0)
    sequences = torch.arange(attention_mask.shape[0], device=attention_mask.device)
    return hidden_states[..., sequences, pooled_positions(attention_mask, pooling), :]


class RecommendationHead(nn.Module):
    """score(S_u, i) = v^T GELU(W_p h + b_p) + c, on the pooled hidden state h of the (history, candidate) prompt."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.GELU()
        self.score = nn.Linear(hidden_size, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.score(self.activation(self.pooler(pooled))).squeeze(-1)


class ResidualProjection(nn.Module):
    """h + B A h, of rank r, with B = 0 at initialisation: the identity, so an untrained model scores as the backbone
    does; linear, so a history's projection is the weighted mean of its items' projections. Initialised here and
    marked so, since the base's initialiser (normal weights everywhere) would break the identity."""

    def __init__(self, hidden_size: int, rank: int):
        super().__init__()
        self.down = nn.Linear(hidden_size, rank, bias=False)
        self.up = nn.Linear(rank, hidden_size, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # as LoRA's A
        nn.init.zeros_(self.up.weight)
        self.down._is_hf_initialized = self.up._is_hf_initialized = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.down(hidden))


class SimilarityHead(nn.Module):
    """score(S_u, i) = cos(h_u - c, h_i - c) / tau [+ w * log(1 + count_i)] with a learned temperature tau (stored as
    log(1 / tau), as in CLIP), when `popularity_weight` is set a learned popularity weight w starting there, and with
    `hidden_size` a fixed centre c (the buffer `center`, zero until `set_center`; no centre otherwise). With
    `projection_rank` r, every representation first goes through a trainable `ResidualProjection` P (the identity at
    initialisation): score = cos(P h_u - c, P h_i - c) / tau + prior.

    Sampled negatives are uniform over the catalogue while the items people buy next are not, so how often an item
    occurs in the train histories is a strong signal that a title's text does not carry (research/results.md). The
    centre removes the direction all representations share (large in decoders), which the cosine would otherwise
    be dominated by."""

    def __init__(self, temperature: float, popularity_weight: float | None = None, hidden_size: int | None = None,
                 projection: ResidualProjection | None = None):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.popularity_weight = (None if popularity_weight is None
                                  else nn.Parameter(torch.tensor(float(popularity_weight))))
        self.center = None if hidden_size is None else nn.Buffer(torch.zeros(hidden_size))
        self.projection = projection

    def _centred(self, representations: torch.Tensor) -> torch.Tensor:
        """P h - c: projected (with a projection), then centred (with a centre)."""
        if self.projection is not None:
            representations = self.projection(representations)
        return representations if self.center is None else representations - self.center

    @torch.no_grad()
    def set_start(self, temperature: float, popularity_weight: float | None) -> None:
        """Set the learned temperature and prior weight to a starting point (chosen on validation users)."""
        self.logit_scale.fill_(math.log(1.0 / temperature))
        if (popularity_weight is None) != (self.popularity_weight is None):
            raise ValueError("A starting prior weight needs a head with a popularity prior, and only such a head.")
        if popularity_weight is not None:
            self.popularity_weight.fill_(float(popularity_weight))

    @torch.no_grad()
    def set_center(self, center: torch.Tensor) -> None:
        if self.center is None:
            raise ValueError("This model was built without a centre (center_representations=False).")
        if center.shape != self.center.shape:
            raise ValueError(f"The centre must have shape {tuple(self.center.shape)}, got {tuple(center.shape)}.")
        self.center.copy_(center)

    def scale(self) -> torch.Tensor:
        """1 / tau, clamped at `MAX_LOGIT_SCALE`."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def index_queries(self, queries: torch.Tensor) -> torch.Tensor:
        """`(batch, d + 1)`: queries for an inner-product index over `index_items`: the centred unit query and a 1
        that picks up each item's prior, so that `scale() * index_queries(q) @ index_items(i).T` is `forward(q, i)`."""
        return F.pad(F.normalize(self._centred(queries), dim=-1), (0, 1), value=1.0)

    def index_items(self, items: torch.Tensor, popularity: torch.Tensor | None = None) -> torch.Tensor:
        """`(items, d + 1)`: the centred unit items and, as an extra dimension, their prior over the scale (0 without a
        prior): one shared pool of items as an inner-product index holds it (see `index_queries`)."""
        items = F.normalize(self._centred(items), dim=-1)
        if self.popularity_weight is None:
            return F.pad(items, (0, 1), value=0.0)
        if popularity is None:
            raise ValueError("This model scores with a popularity prior (popularity_weight is set): pass the items' "
                             "counts in the training histories.")
        prior = self.popularity_weight * log_popularity(popularity.to(items.device, items.dtype))
        return torch.cat([items, (prior / self.scale()).unsqueeze(1)], dim=1)

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor,
                candidate_popularity: torch.Tensor | None = None) -> torch.Tensor:
        """`queries` `(batch, d)`; `candidates` `(batch, num_candidates, d)` (a list per query) or `(items, d)` (one
        pool shared by every query, e.g. in-batch negatives) -> `(batch, num_candidates | items)`;
        `candidate_popularity`: the candidates' counts, `candidates` without its last dimension, or for a shared pool
        `(batch, items)` (counts that leave out each query's own history)."""
        logits = self.scale() * self.similarity(queries, candidates)
        if self.popularity_weight is None:
            return logits
        if candidate_popularity is None:
            raise ValueError("This model scores with a popularity prior (popularity_weight is set): pass "
                             "candidate_popularity, each candidate's count in the training histories (0 for an item "
                             "never seen), shaped like the candidates.")
        prior = self.popularity_weight * log_popularity(candidate_popularity.to(logits.device, logits.dtype))
        return logits + (prior if prior.dim() == 2 else prior.unsqueeze(0))

    def similarity(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The cosine part of `forward` (before the temperature and the prior), with the same shapes."""
        queries, candidates = F.normalize(self._centred(queries), dim=-1), F.normalize(self._centred(candidates), dim=-1)
        if candidates.dim() == 3:
            return torch.einsum("bd,bcd->bc", queries, candidates)
        return queries @ candidates.T


def log_popularity(counts: torch.Tensor) -> torch.Tensor:
    """log(1 + count), the prior's feature (negative counts read as 0)."""
    return torch.log1p(counts.clamp(min=0))


def scoring_head(config, hidden_size: int) -> nn.Module:
    """The head a config's scoring form needs (X-Cross and the single-domain recommenders alike)."""
    if config.scoring == "dual":
        return SimilarityHead(config.temperature, config.popularity_weight,
                              hidden_size if config.center_representations else None,
                              None if config.projection_rank is None
                              else ResidualProjection(hidden_size, config.projection_rank))
    return RecommendationHead(hidden_size)


def recency_weights(lengths: list[int], decay: float) -> torch.Tensor:
    """`(histories, sum(lengths))`: row u weights the items of history u (stacked oldest first, histories one after
    another) by decay ** (steps from its last item), normalised to sum to one; 1.0 is the plain mean."""
    if not all(lengths):
        raise ValueError("A history is empty: the history representation is the mean of its items, so every history "
                         "needs at least one item.")
    weights = torch.zeros(len(lengths), sum(lengths))
    start = 0
    for row, length in enumerate(lengths):
        recency = decay ** torch.arange(length - 1, -1, -1, dtype=torch.float64)
        weights[row, start:start + length] = (recency / recency.sum()).float()
        start += length
    return weights


Encoder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _flatten(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.reshape(-1, tensor.shape[-1])


def _check_same_shape(ids_name: str, input_ids: torch.Tensor, **others: torch.Tensor | None) -> None:
    if input_ids.numel() == 0:
        raise ValueError(f"{ids_name} is empty (shape {tuple(input_ids.shape)}): a batch needs at least one sequence "
                         "of at least one token.")
    for name, tensor in others.items():
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, but {ids_name} {tuple(input_ids.shape)}: "
                             "they must have the same shape.")


def check_inputs(scoring: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None, candidate_input_ids: torch.Tensor | None = None,
                 candidate_attention_mask: torch.Tensor | None = None,
                 candidate_token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 history_weights: torch.Tensor | None = None, candidate_popularity: torch.Tensor | None = None) -> None:
    """Refuse what a recommender would otherwise reshape or index silently wrong, or fail on without saying why:
    inputs shaped for the other scoring form, masks of another shape, empty batches, labels out of range."""
    batch = input_ids.shape[0]
    if scoring == "dual":
        if candidate_input_ids is None or input_ids.dim() != 2 or candidate_input_ids.dim() not in (2, 3):
            raise ValueError(
                "This model scores in dual mode (scoring='dual'): pass the history prompts as input_ids "
                "(batch, seq_len) and the candidate texts as candidate_input_ids (batch, num_candidates, seq_len) or "
                f"(items, seq_len) shared by the batch; got input_ids {tuple(input_ids.shape)} and candidate_input_ids "
                f"{None if candidate_input_ids is None else tuple(candidate_input_ids.shape)}. "
                "`modeling_xcross.pipeline.RecommendationCollator(..., scoring='dual')` builds them from text.")
        if history_weights is not None:
            if history_weights.dim() != 2 or history_weights.shape[1] != input_ids.shape[0]:
                raise ValueError(f"history_weights must be (histories, {input_ids.shape[0]}): one weight per history "
                                 f"item of input_ids for each history; got {tuple(history_weights.shape)}.")
            batch = history_weights.shape[0]
        if candidate_input_ids.dim() == 3 and candidate_input_ids.shape[0] != batch:
            raise ValueError(f"candidate_input_ids has {candidate_input_ids.shape[0]} candidate lists for "
                             f"{batch} histories.")
        _check_same_shape("candidate_input_ids", candidate_input_ids, candidate_attention_mask=candidate_attention_mask,
                          candidate_token_type_ids=candidate_token_type_ids)
        if candidate_popularity is not None and candidate_popularity.shape != candidate_input_ids.shape[:-1]:
            raise ValueError(f"candidate_popularity must have the shape {tuple(candidate_input_ids.shape[:-1])} of the "
                             f"candidates, got {tuple(candidate_popularity.shape)}.")
        num_candidates = candidate_input_ids.shape[-2]
    else:
        if candidate_input_ids is not None or history_weights is not None or candidate_popularity is not None:
            raise ValueError("candidate_input_ids, history_weights and candidate_popularity are for dual scoring; this "
                             "model scores in cross mode "
                             "(scoring='cross'): pass one (history, candidate) prompt per candidate as input_ids "
                             "(batch, num_candidates, seq_len).")
        if input_ids.dim() not in (2, 3):
            raise ValueError(f"input_ids must be (batch, num_candidates, seq_len) or (batch, seq_len), got shape "
                             f"{tuple(input_ids.shape)}.")
        if labels is not None and input_ids.dim() != 3:
            raise ValueError("labels index the true candidate, so input_ids must be (batch, num_candidates, seq_len).")
        num_candidates = input_ids.shape[1] if input_ids.dim() == 3 else 1
    _check_same_shape("input_ids", input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if labels is None:
        return
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape (batch,) = ({batch},), got {tuple(labels.shape)}.")
    if labels.min() < 0 or labels.max() >= num_candidates:
        raise ValueError(f"labels must be candidate indices from 0 to {num_candidates - 1}, got {labels.tolist()}.")


def score_candidates(encode: Encoder, scoring: str, head: nn.Module, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                     candidate_input_ids: torch.Tensor | None = None, candidate_attention_mask: torch.Tensor | None = None,
                     candidate_token_type_ids: torch.Tensor | None = None, history_weights: torch.Tensor | None = None,
                     candidate_popularity: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of either scoring form; `encode(input_ids, attention_mask, token_type_ids)` maps 2-D inputs to pooled
    representations `(sequences, d)`. With `history_weights`, `input_ids` are the histories' items and a history is
    their weighted mean (`history_query`)."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if scoring == "cross":
        pooled = encode(_flatten(input_ids), _flatten(attention_mask), _flatten(token_type_ids))
        return head(pooled).view(input_ids.shape[:-1])
    if candidate_attention_mask is None:
        candidate_attention_mask = torch.ones_like(candidate_input_ids)
    queries = history_query(encode(input_ids, attention_mask, token_type_ids), history_weights)
    items = encode(_flatten(candidate_input_ids), _flatten(candidate_attention_mask),
                   _flatten(candidate_token_type_ids))
    return head(queries, items.view(*candidate_input_ids.shape[:-1], -1), candidate_popularity)


def history_query(encoded: torch.Tensor, history_weights: torch.Tensor | None) -> torch.Tensor:
    """The history representations: `encoded` itself (one prompt per history), or with `history_weights` the weighted
    mean of the unit-normalised item representations `encoded` holds."""
    if history_weights is None:
        return encoded
    return history_weights.to(encoded.device, encoded.dtype) @ F.normalize(encoded, dim=-1)
