"""Batching examples into `(batch, num_candidates, seq_len)` tensors for encoder and decoder backbones."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import torch

from ..errors import XCrossError
from ..head import recency_weights
from .prompts import PROMPT, PromptFormat


class RecommendationCollator:
    """Tokenizes the examples of a batch for either scoring form and pads them to one length.

    Cross scoring, one prompt per candidate: `text_pair=True` (encoders) the pair (history, candidate) with token
    types, history truncated from the left; `text_pair=False` (decoders) one text with the candidate last, tokens
    right after the prompt prefix (the oldest history) dropped until it fits.
    Dual scoring: the history text (oldest tokens dropped first) as `input_ids`, or with `history_encoding="items"`
    the distinct history titles of the batch as `input_ids` and `history_weights` (see `head.recency_weights`); the
    candidate titles as `candidate_input_ids`, one list per example, and their `candidate_popularity` when the
    examples carry it; training examples marked `in_batch` share one pool of candidates instead (every example's
    target and negatives, each title once), so the other examples' items are negatives too.
    """

    def __init__(self, tokenizer, text_pair: bool, max_length: int = 128, prompt: PromptFormat = PROMPT,
                 scoring: str = "cross", history_encoding: str = "text", history_decay: float = 1.0):
        self.tokenizer, self.text_pair, self.max_length, self.prompt = tokenizer, text_pair, max_length, prompt
        self.scoring, self.history_encoding, self.history_decay = scoring, history_encoding, history_decay
        if text_pair:
            tokenizer.truncation_side = "left"
        if scoring == "dual" and tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
        self._prefix_length = self._leading_tokens(prompt.decoder_prefix)
        self._fitted: dict[str, str] = {}  # cross scoring: title -> the title cut to fit (fit_title)

    def _leading_tokens(self, prefix: str) -> int:
        """Tokens up to the end of `prefix` in a tokenized text that starts with it (leading special tokens too)."""
        with_specials = self.tokenizer(prefix)["input_ids"]
        bare = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        start = next(i for i in range(len(with_specials)) if with_specials[i:i + len(bare)] == bare)
        return start + len(bare)

    @cached_property
    def candidate_budget(self) -> int:
        """Tokens a candidate title may take: `max_length` less the prompt's fixed tokens (special tokens, and in a
        cross prompt the template and one history token). Refused when that leaves none."""
        probe = "x"  # a one-token title; its prompt's length less its own token is the fixed part
        if self.scoring == "dual":  # a title is encoded on its own
            prompt = self.tokenizer(probe)
        elif self.text_pair:
            prompt = self.tokenizer("x", probe)
        else:
            prompt = self.tokenizer(self.prompt.decoder_text("x", probe))
        fixed = len(prompt["input_ids"]) - len(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
        if self.max_length <= fixed:
            raise XCrossError(f"--max-length {self.max_length} is too small: the prompt's fixed tokens"
                              f"{'' if self.scoring == 'dual' else ' and one history token'} take {fixed}, which "
                              f"leaves no token of a title; pass --max-length {fixed + 1} or more.")
        return self.max_length - fixed

    def title_lengths(self, titles: Iterable[str]) -> list[int]:
        """Each title's tokens on its own (no special tokens)."""
        return [len(ids) for ids in self.tokenizer(list(titles), add_special_tokens=False)["input_ids"]]

    def fit_title(self, title: str) -> str:
        """Cross scoring: the title whole where it fits beside one history token, else its first
        `candidate_budget` tokens (cut at a token boundary of the text), so a long title is cut, not refused."""
        if title not in self._fitted:
            budget = self.candidate_budget
            offsets = self.tokenizer(title, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            self._fitted[title] = title if len(offsets) <= budget else title[:offsets[budget - 1][1]]
        return self._fitted[title]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.scoring == "dual":
            return self._collate_dual(examples)
        histories, candidates = [], []
        for example in examples:
            history = self.prompt.history(example["history"])
            histories += [history] * len(example["candidates"])
            candidates += [self.fit_title(candidate) for candidate in example["candidates"]]
        batch = self._encode_pairs(histories, candidates) if self.text_pair else self._encode_texts(histories,
                                                                                                    candidates)
        shape = (len(examples), len(examples[0]["candidates"]), -1)
        batch = {key: value.view(shape) for key, value in batch.items()}
        batch["labels"] = torch.tensor([example["label"] for example in examples])
        return batch

    def _collate_dual(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        histories = [example["history"] for example in examples]
        if self.history_encoding == "items":
            titles = list(dict.fromkeys(title for history in histories for title in history))
            batch = {**self.encode_items(titles), "history_weights": self.history_weights(histories, titles)}
        else:
            batch = self.encode_histories(histories)
        with_popularity = all("candidate_popularity" in example for example in examples)
        if all(example.get("in_batch") for example in examples):
            if with_popularity:
                raise XCrossError("In-batch negatives share one candidate pool, but a popularity prior gives each "
                                  "example's candidates counts without the example's own history; train with one or "
                                  "the other.")
            pool = list(dict.fromkeys(title for example in examples for title in example["candidates"]))
            labels = [pool.index(example["candidates"][example["label"]]) for example in examples]
            candidates = self.encode_items(pool)
        else:
            shape = (len(examples), len(examples[0]["candidates"]), -1)
            encoded = self.encode_items([title for example in examples for title in example["candidates"]])
            candidates = {key: value.view(shape) for key, value in encoded.items()}
            labels = [example["label"] for example in examples]
            if with_popularity:
                batch["candidate_popularity"] = torch.tensor([example["candidate_popularity"] for example in examples],
                                                             dtype=torch.float32)
        batch.update({f"candidate_{key}": value for key, value in candidates.items()})
        batch["labels"] = torch.tensor(labels)
        return batch

    def history_weights(self, histories: list[list[str]], titles: list[str]) -> torch.Tensor:
        """`(histories, titles)`: each history's recency weights (`head.recency_weights`) summed onto the distinct
        `titles` its items are (a title bought twice counts twice)."""
        position = {title: index for index, title in enumerate(titles)}
        stacked = recency_weights([len(history) for history in histories], self.history_decay)
        columns = torch.tensor([position[title] for history in histories for title in history], dtype=torch.long)
        return torch.zeros(len(histories), len(titles)).index_add_(1, columns, stacked)

    def encode_histories(self, histories: list[list[str]]) -> dict[str, torch.Tensor]:
        """Dual scoring, `history_encoding="text"`: history texts (titles oldest first), the oldest tokens dropped
        first."""
        return self._encode_single([self.prompt.history(titles) for titles in histories], truncation_side="left")

    def encode_items(self, titles: list[str]) -> dict[str, torch.Tensor]:
        """Dual scoring: item titles on their own (a title longer than `max_length` keeps its beginning)."""
        return self._encode_single(titles, truncation_side="right")

    def _encode_single(self, texts: list[str], truncation_side: str) -> dict[str, torch.Tensor]:
        self.tokenizer.truncation_side = truncation_side
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt")
        return {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}

    def _encode_pairs(self, histories: list[str], candidates: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(histories, candidates, truncation="only_first", max_length=self.max_length,
                                 padding=True, return_tensors="pt")
        return {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}

    def _encode_texts(self, histories: list[str], candidates: list[str]) -> dict[str, torch.Tensor]:
        texts = [self.prompt.decoder_text(h, c) for h, c in zip(histories, candidates)]
        sequences = [self._truncate(ids)[0] for ids in self.tokenizer(texts)["input_ids"]]
        input_ids, attention_mask = self._right_pad(sequences)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _truncate(self, ids: list[int]) -> tuple[list[int], int]:
        """The ids without the tokens right after the prompt prefix (the oldest history) that exceed `max_length`,
        and how many went."""
        excess = max(0, len(ids) - self.max_length)
        return (ids[:self._prefix_length] + ids[self._prefix_length + excess:] if excess else ids), excess

    def _right_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, ids in enumerate(sequences):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
        return input_ids, attention_mask

    def shared_prefix_batch(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """The decoder prompts of `__call__`, token for token, split for `model.score_shared_prefix`: every distinct
        prefix (the prompt before the candidate) once, and each prompt's remaining tokens with the prefix it continues.

        Each prompt is tokenized whole, as `__call__` does, and split after the tokens it shares with the prompt
        tokenized without its candidate, so a token spanning the boundary stays whole; truncation then moves the
        split left by the tokens it drops. The candidates of one user share their prefix unless truncation cut their
        histories differently (prompts of different lengths), which stays exact but shares less.
        """
        if self.text_pair:
            raise ValueError("Shared-prefix batches are for decoder prompts (candidate last); an encoder reads the "
                             "history and the candidate together, so call the collator itself.")
        prefixes: dict[tuple[int, ...], int] = {}
        continuations, prefix_index = [], []
        for example in examples:
            history = self.prompt.history(example["history"])
            before_candidate = self.tokenizer(self.prompt.decoder_text(history, ""))["input_ids"]
            texts = [self.prompt.decoder_text(history, self.fit_title(candidate))
                     for candidate in example["candidates"]]
            for ids in self.tokenizer(texts)["input_ids"]:
                shared = next((i for i, (a, b) in enumerate(zip(ids, before_candidate)) if a != b),
                              min(len(ids), len(before_candidate)))
                ids, excess = self._truncate(ids)
                split = min(max(shared - excess, self._prefix_length) if excess else shared, len(ids) - 1)
                prefix_index.append(prefixes.setdefault(tuple(ids[:split]), len(prefixes)))
                continuations.append(ids[split:])
        prefix_input_ids, prefix_attention_mask = self._right_pad([list(prefix) for prefix in prefixes])
        input_ids, attention_mask = self._right_pad(continuations)
        shape = (len(examples), len(examples[0]["candidates"]))
        return {"prefix_input_ids": prefix_input_ids, "prefix_attention_mask": prefix_attention_mask,
                "input_ids": input_ids.view(*shape, -1), "attention_mask": attention_mask.view(*shape, -1),
                "prefix_index": torch.tensor(prefix_index).view(shape),
                "labels": torch.tensor([example["label"] for example in examples])}
