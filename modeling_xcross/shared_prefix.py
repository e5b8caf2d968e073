"""Scoring every candidate of a user against one shared history prefix, for decoder backbones (exact).

In the decoder prompt `Purchase history: ... Next item: <candidate>` the candidate comes last, so with causal
attention the history tokens' hidden states do not depend on the candidate, and neither does their X-Cross fusion
(it is per token). Each distinct prefix therefore runs once through the n fused streams; its per-stream keys and
values are kept in a transformers `DynamicCache`, copied for every candidate row that continues it, and the
candidate tokens of all rows run as one batch against those copies, fused per token as usual. Pooling (the last
non-padding candidate token), the domain weights and the scoring head are the plain forward's, so the scores are
the plain forward's up to float rounding. The prompt's tokens are split by
`RecommendationCollator.shared_prefix_batch`, which keeps them identical to the plain prompts.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def check_right_padded(mask: torch.Tensor, name: str) -> None:
    """Positions after a shared prefix continue from its length, which holds only for right padding."""
    if (mask[..., 1:] > mask[..., :-1]).any() or not mask[..., 0].all():
        raise ValueError(f"{name} must be right-padded (ones, then zeros) with at least one token per row; build "
                         "the batch with RecommendationCollator.shared_prefix_batch.")


def expand_prefix_cache(cache: DynamicCache, prefix_rows: torch.Tensor, num_prefixes: int,
                        num_streams: int) -> DynamicCache:
    """A cache holding, for each continuation row and stream, a copy of its prefix's keys and values.

    `cache` holds `num_prefixes` prefixes as n stacked streams (stream-major, as the blocks see them); row r of the
    result is prefix `prefix_rows[r]`, again stacked stream-major over the rows.
    """
    streams = torch.arange(num_streams, device=prefix_rows.device).unsqueeze(1)
    index = (streams * num_prefixes + prefix_rows).reshape(-1)
    return DynamicCache([(keys.index_select(0, index), values.index_select(0, index)) for keys, values, _ in cache])


def shared_prefix_logits(model, prefix_input_ids: torch.Tensor, prefix_attention_mask: torch.Tensor,
                         input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         prefix_index: torch.Tensor) -> torch.Tensor:
    """Scores of the continuation rows `input_ids` `(..., cont_len)`, row r continuing prefix `prefix_index[r]`.

    The prefixes run in passes sized as the plain forward's (`model.sequences_per_pass`); after each, the rows that
    continue its prefixes run, shortest first, in passes of their own against an expanded copy of its cache. Every
    pass drops the padding columns none of its rows needs (right padding: no real token sees them).
    """
    num_prefixes, prefix_len = prefix_input_ids.shape
    rows_shape, cont_len = input_ids.shape[:-1], input_ids.shape[-1]
    if prefix_index.shape != rows_shape or attention_mask.shape != input_ids.shape:
        raise ValueError(f"prefix_index {tuple(prefix_index.shape)} must have input_ids' leading shape "
                         f"{tuple(rows_shape)}, and attention_mask input_ids' shape {tuple(input_ids.shape)}.")
    if prefix_index.numel() and not 0 <= int(prefix_index.min()) <= int(prefix_index.max()) < num_prefixes:
        raise ValueError(f"prefix_index refers to prefixes outside 0..{num_prefixes - 1}.")
    check_right_padded(prefix_attention_mask, "prefix_attention_mask")
    check_right_padded(attention_mask, "attention_mask")
    input_ids, attention_mask = input_ids.reshape(-1, cont_len), attention_mask.reshape(-1, cont_len)
    prefix_index = prefix_index.reshape(-1).to(input_ids.device)
    prefix_lengths, cont_lengths = prefix_attention_mask.sum(dim=-1), attention_mask.sum(dim=-1)
    device = input_ids.device

    scores, rows_scored = [], []
    prefixes_per_pass = model.sequences_per_pass(num_prefixes, prefix_len, device=device)
    for first in range(0, num_prefixes, prefixes_per_pass):
        last = min(num_prefixes, first + prefixes_per_pass)
        width = int(prefix_lengths[first:last].max())
        prefix_mask = prefix_attention_mask[first:last, :width]
        cache = DynamicCache()
        model.run_streams(prefix_input_ids[first:last, :width], prefix_mask, past_key_values=cache)
        rows = ((prefix_index >= first) & (prefix_index < last)).nonzero().squeeze(-1)
        rows = rows[cont_lengths[rows].argsort(stable=True)]
        # The widest activation of a continuation pass is the MLP's over its own tokens, as in the plain forward.
        rows_per_pass = model.sequences_per_pass(len(rows), cont_len, device=device)
        for pass_rows in rows.split(rows_per_pass):
            local = prefix_index[pass_rows] - first
            pass_len = int(cont_lengths[pass_rows].max())
            continuation_mask = attention_mask[pass_rows, :pass_len]
            streams = model.run_streams(
                input_ids[pass_rows, :pass_len],
                torch.cat([prefix_mask[local], continuation_mask], dim=-1),
                past_key_values=expand_prefix_cache(cache, local, last - first, model.num_streams),
                position_ids=prefix_lengths[first:last][local].unsqueeze(-1) + torch.arange(pass_len, device=device),
            ).last_hidden_state
            scores.append(model.head(model.pool_streams(streams, continuation_mask)))
            rows_scored.append(pass_rows)
    order = torch.cat(rows_scored).argsort()
    return torch.cat(scores)[order].view(rows_shape)
