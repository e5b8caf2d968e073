"""Recommending from a whole catalogue: every item ranked for a history, not a given candidate list.

Dual scoring encodes items on their own, so a catalogue's item representations are computed once (batched, with a
progress bar), cached in a safetensors file keyed by the titles and the model and checked on every read
(`item_cache`), and a history's top items are one history encode and a search of them (`item_search`: exact in
chunks of items, or a FAISS index for catalogues of millions). Cross scoring reads each
(history, item) pair, so it ranks in two stages: a dual-scoring first stage (by default the untrained backbone's
similarity) retrieves the `rerank_top` best items, the model re-ranks them, and the ranking goes on below them in
first-stage order.

Ties keep catalogue order (under re-ranking, first-stage order) in a recommendation, and count against the true item
in a full-ranking evaluation, as in the sampled metrics.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import html
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from weakref import WeakKeyDictionary

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from configuration_xcross import PAPER_SCORING

from ..auto_loading import checked_popularity, load_popularity, model_backbone
from ..checkpoint import CONFIG_NAME
from ..errors import XCrossError
from ..head_recommender import HeadRecommender
from .encoding import (ENCODE_BATCH_SIZE, encode_histories, encode_items, encode_texts, model_device,
                       representation_scores)
from .item_cache import read_item_cache, write_item_cache
from .item_search import ItemSearch
from .model_inputs import model_collator
from .scoring import candidate_scores

logger = logging.get_logger(f"transformers.{__name__}")

DEFAULT_RERANK_TOP = 100
ITEM_CACHE_DIR = "item_cache"
# Part of every cache key: a change to what the cache holds or how it is computed bumps it.
ITEM_CACHE_FORMAT = "2"
# Histories ranked at once (a full-ranking evaluation holds their (histories, items) score matrix).
HISTORIES_PER_CHUNK = 256
# Titles encoded between two writes of the item cache: what an interrupted encoding loses at most.
ENCODE_CHUNK_ITEMS = 8192
# The digest of each model's weights with the versions of the tensors it was computed from (see `model_fingerprint`).
_FINGERPRINTS: WeakKeyDictionary = WeakKeyDictionary()


class CatalogueError(XCrossError):
    """A catalogue, history or request that cannot be ranked; the message says what to change."""


@dataclass(frozen=True)
class RecommendedItem:
    item_id: int | str
    title: str
    score: float
    rank: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Catalogue:
    """The items to rank: their ids and titles, in a fixed order (the order ties keep). Several items may share a
    title; a recommendation leaves out every item whose title is in the history (see `resolve`). History titles are
    matched to the catalogue's by `title_key`, case-folded with `fold_case` (a model whose tokenizer is uncased)."""

    item_ids: tuple
    titles: tuple[str, ...]
    fold_case: bool = False

    def __post_init__(self):
        if not self.titles:
            raise CatalogueError("The catalogue is empty: pass {item_id: title} of the items to rank.")
        if len(self.item_ids) != len(self.titles):
            raise CatalogueError(f"The catalogue has {len(self.item_ids)} ids for {len(self.titles)} titles.")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise CatalogueError("The catalogue names an item id twice; every item needs its own id.")
        untitled = [item for item, title in zip(self.item_ids, self.titles) if not isinstance(title, str)
                    or not title.strip()]
        if untitled:
            raise CatalogueError(f"Items {untitled[:5]} of the catalogue have no title (a non-empty string); the "
                                 "model ranks items by their titles.")

    @classmethod
    def of(cls, items: "Catalogue | Mapping | Sequence[str]") -> "Catalogue":
        """A catalogue from `{item_id: title}`, a list of titles (ids are positions) or a domain's titles (an object
        with a `titles` mapping, such as `DomainData`)."""
        if isinstance(items, Catalogue):
            return items
        titles = getattr(items, "titles", items)
        if isinstance(titles, Mapping):
            return cls(tuple(titles), tuple(titles.values()))
        if isinstance(titles, Sequence) and not isinstance(titles, str):
            return cls(tuple(range(len(titles))), tuple(titles))
        raise TypeError(f"A catalogue is {{item_id: title}}, a list of titles or a DomainData; got "
                        f"{type(items).__name__}.")

    def __len__(self) -> int:
        return len(self.titles)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the titles in order: what the item representations depend on."""
        return hashlib.sha256(json.dumps(self.titles).encode()).hexdigest()

    @cached_property
    def _positions(self) -> dict:
        return {item: position for position, item in enumerate(self.item_ids)}

    @cached_property
    def _title_groups(self) -> dict[str, list[int]]:
        """The positions of the items of each title key, in catalogue order (several for a duplicated title)."""
        groups: dict[str, list[int]] = {}
        for position, title in enumerate(self.titles):
            groups.setdefault(self.key(title), []).append(position)
        return groups

    @cached_property
    def _semicolon_titles(self) -> dict[str, int]:
        """The first position of each title that holds ';', by its key with no space around its ';'s."""
        return {_semicolons_tight(key): group[0] for key, group in self._title_groups.items() if ";" in key}

    def key(self, title: str) -> str:
        """`title_key` under this catalogue's case rule."""
        return title_key(title, self.fold_case)

    def position(self, item) -> int | None:
        """The catalogue position of an item id, else of the first item of a title; None when it names no item."""
        if item in self._positions:
            return self._positions[item]
        group = self._title_groups.get(self.key(item)) if isinstance(item, str) else None
        return group[0] if group else None

    def closest_title(self, text: str) -> str | None:
        """The catalogue title closest to a text that matches none (a typo, a word missing), if one is close."""
        found = difflib.get_close_matches(self.key(text), self._title_groups, n=1, cutoff=0.8)
        return self.titles[self._title_groups[found[0]][0]] if found else None

    def split_title(self, pieces: Sequence[str]) -> str | None:
        """The first catalogue title holding ';' that consecutive `pieces` (a text split at ';') join back into."""
        longest = max((key.count(";") + 1 for key in self._semicolon_titles), default=0)
        for start in range(len(pieces)):
            for end in range(start + 2, min(start + longest, len(pieces)) + 1):
                position = self._semicolon_titles.get(_semicolons_tight(self.key(";".join(pieces[start:end]))))
                if position is not None:
                    return self.titles[position]
        return None

    def _history_item(self, item, index: int) -> int | str | None:
        """The catalogue position a history item names, the cleaned text of a title outside the catalogue, or None
        for a blank title. An item id comes first where a string is both an id and another item's title."""
        if isinstance(item, bool) or not isinstance(item, Hashable):
            raise CatalogueError(f"History {index}: {item!r} is a {type(item).__name__}, neither a title (text) nor an "
                                 "item id of the catalogue; pass each item as one title or one id.")
        if not isinstance(item, str):
            if item not in self._positions:
                raise CatalogueError(f"History {index}: item id {item!r} is not in the catalogue ({len(self)} items); "
                                     "pass ids of the catalogue or titles.")
            return self._positions[item]
        text = clean_text(item)
        titled = self._title_groups.get(self.key(item))
        if item in self._positions:
            if titled and self.item_ids[titled[0]] != item:
                logger.warning(f"History {index}: {item!r} is the id of one item and the title of item "
                               f"{self.item_ids[titled[0]]!r}; it is read as the item id.")
            return self._positions[item]
        if titled:
            return titled[0]
        return text or None

    def resolve(self, history: Sequence, index: int = 0) -> tuple[list[str], list[int]]:
        """The history as the model reads it (titles, oldest first) and the catalogue positions it excludes from a
        recommendation: every item whose title is in the history, so that no item is recommended under a title the
        user already has (a catalogue may give one title to several items). Titles and item ids are both taken;
        titles are cleaned (blank ones dropped) and those outside the catalogue are read as text, with a warning
        that counts them; only a history empty after cleaning is refused."""
        if isinstance(history, str | bytes) or not isinstance(history, Sequence):
            raise CatalogueError(f"History {index} is {type(history).__name__}, not a list of titles or item ids; "
                                 "pass one list per user, e.g. [['title one', 'title two']].")
        titles, positions, unknown, blank = [], set(), [], 0
        for item in history:
            named = self._history_item(item, index)
            if isinstance(named, int):
                titles.append(self.titles[named])
                positions.update(self._title_groups[self.key(self.titles[named])])
            elif named is not None:
                titles.append(named)
                unknown.append(named)
            else:
                blank += 1
        if not titles:
            raise CatalogueError(f"History {index} is empty{' after cleaning (blank titles)' if history else ''}: a "
                                 "recommendation needs at least one item of the user.")
        if blank:
            logger.warning(f"History {index}: {blank} blank title{'s' if blank > 1 else ''} dropped.")
        if unknown:
            logger.warning(f"History {index}: {len(unknown)} of its {len(titles)} titles are not in the catalogue and "
                           f"are read as text only: {', '.join(map(self._with_closest, unknown[:3]))}.")
        return titles, sorted(positions)

    def _with_closest(self, text: str) -> str:
        closest = self.closest_title(text)
        return repr(text) + (f" (did you mean {closest!r}?)" if closest else "")


def clean_text(text: str) -> str:
    """A title as the data's titles are cleaned (data.clean_title): HTML entities decoded (&#39; &quot; &amp;),
    Unicode NFC (an accent typed as one character or as a letter and a combining mark reads the same) and
    whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", html.unescape(text)).split())


def title_key(text: str, fold_case: bool = False) -> str:
    """What a history title is matched to the catalogue by: `clean_text`, case-folded with `fold_case` (a model with
    an uncased tokenizer reads "hammer" and "Hammer" as one title)."""
    return clean_text(text).casefold() if fold_case else clean_text(text)


def _semicolons_tight(key: str) -> str:
    return re.sub(r"\s*;\s*", ";", key)


def is_uncased(tokenizer) -> bool:
    """Whether a tokenizer reads upper and lower case alike (an uncased BERT lower-cases its input)."""
    return (tokenizer("Hammer AND Nails", add_special_tokens=False)["input_ids"]
            == tokenizer("hammer and nails", add_special_tokens=False)["input_ids"])


def model_fingerprint(model) -> str:
    """sha256 of a model's config and every weight (the frozen base too). Recomputed only once a weight changed:
    in-place updates (optimizer steps, `load_state_dict`) bump a tensor's version, new tensors have new storage."""
    state = model.state_dict()
    versions = [(key, tensor.data_ptr(), tensor._version) for key, tensor in state.items()]
    known = _FINGERPRINTS.get(model)
    if known is not None and known[0] == versions:
        return known[1]
    digest = hashlib.sha256(model.config.to_json_string().encode())
    for key, tensor in state.items():
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    _FINGERPRINTS[model] = (versions, digest.hexdigest())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what a tokenizer does (its serialized pipeline: normalizer, vocabulary, special tokens), not of where
    it was read from: the base's tokenizer and the copy saved with a model give the same key. The truncation and
    padding state a fast tokenizer keeps from its last call is left out (the collator sets them on every call)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        pipeline = {key: value for key, value in json.loads(backend.to_str()).items()
                    if key not in ("truncation", "padding")}
    else:
        pipeline = [type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()), tokenizer.init_kwargs]
    return hashlib.sha256(json.dumps(pipeline, sort_keys=True, default=str).encode()).hexdigest()


def item_cache_key(model, collator, catalogue: Catalogue) -> str:
    """What item representations depend on: the titles, the model (config and weights), the tokenizer and
    `max_length`; pooling and the scoring form are part of the config."""
    parts = {"format": ITEM_CACHE_FORMAT, "titles": catalogue.fingerprint, "model": model_fingerprint(model),
             "tokenizer": tokenizer_fingerprint(collator.tokenizer), "max_length": collator.max_length}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def item_cache_path(cache_dir: str | os.PathLike, catalogue: Catalogue) -> Path:
    """One file per catalogue: a change of model rewrites it (the key in its metadata no longer matches)."""
    return Path(cache_dir) / ITEM_CACHE_DIR / f"items-{catalogue.fingerprint[:16]}.safetensors"


def item_representations(model, collator, catalogue: Catalogue, cache_dir: str | os.PathLike | None = None,
                         batch_size: int = ENCODE_BATCH_SIZE, chunk_size: int = ENCODE_CHUNK_ITEMS) -> torch.Tensor:
    """`(items, d)` of a dual-scoring model: from `cache_dir`'s cache when it holds this model's encoding of these
    titles (checked: see `item_cache`), else encoded `chunk_size` titles at a time, each chunk cached as a part as
    soon as it is done, so that an encoding stopped midway (Ctrl-C, a killed process) resumes at the first missing
    chunk; the parts are removed once the whole file is written."""
    key = item_cache_key(model, collator, catalogue)
    path = item_cache_path(cache_dir, catalogue) if cache_dir is not None else None
    if path is not None:
        # One title encoded gives the width and dtype every cached tensor must have.
        probe = encode_texts(model, collator.encode_items, [catalogue.titles[0]], "checking the item cache", 1)
    if path is not None and path.is_file():
        cached = read_item_cache(path, key, (len(catalogue), probe.shape[1]), probe.dtype)
        if cached is not None:
            return cached.to(model_device(model))
    parts_dir = path.with_suffix(".parts") if path is not None and len(catalogue) > chunk_size else None
    chunks = []
    for start in tqdm(range(0, len(catalogue), chunk_size), desc="encoding the catalogue", unit="chunk",
                      disable=len(catalogue) <= chunk_size):
        titles = list(catalogue.titles[start:start + chunk_size])
        part_key, part = f"{key}:{start}:{start + len(titles)}", None
        if parts_dir is not None:
            part_path = parts_dir / f"{start:012d}.safetensors"
            part = read_item_cache(part_path, part_key, (len(titles), probe.shape[1]), probe.dtype)
        if part is None:
            part = encode_items(model, collator, titles, batch_size)
            if parts_dir is not None:
                write_item_cache(part_path, part_key, part)
        chunks.append(part.to(model_device(model)))
    items = torch.cat(chunks)
    if path is not None:
        write_item_cache(path, key, items)
        if parts_dir is not None and path.is_file():
            shutil.rmtree(parts_dir, ignore_errors=True)
    return items


def own_collator(model):
    """`model_collator(model)`, refused when the model's saved max_length leaves no token of a title beside the
    prompt's fixed tokens, naming the file and field it comes from (the collator's own error names --max-length)."""
    collator = model_collator(model)
    try:
        collator.candidate_budget
    except XCrossError as error:
        probe = copy.copy(collator)  # the same prompt without the limit: its budget tells the fixed tokens
        probe.max_length = 1 << 30
        fixed = probe.max_length - probe.candidate_budget
        directory = default_cache_dir(model)
        where = f"{directory / CONFIG_NAME}: field max_length" if directory else "model.config.max_length"
        raise CatalogueError(f"{where} is {collator.max_length}, which leaves no token of a title beside the prompt's "
                             f"{fixed} fixed tokens; set it to {fixed + 1} or more (the --max-length the model was "
                             "trained with, 128 by default).") from error
    return collator


def default_cache_dir(model) -> Path | None:
    """The directory the model was loaded from, if any."""
    directory = Path(model.name_or_path or "")
    return directory if model.name_or_path and directory.is_dir() else None


def similarity_model(backbone: str, **scoring) -> HeadRecommender:
    """The untrained backbone in dual scoring, a history the plain mean of its titles' representations (mean-pooled
    cosine, no prior): the similarity baseline and the default first stage of cross-scoring models; `scoring`: other
    `RecommenderConfig` fields (history_decay, temperature, popularity_weight, or another history_encoding). `create` seeds torch; the caller's
    random state is kept."""
    settings = {**PAPER_SCORING, "scoring": "dual", "history_encoding": "items", **scoring}
    with torch.random.fork_rng(devices=[]):
        return HeadRecommender.create(backbone, **settings).eval()


def excluding(scores: torch.Tensor, excluded: Sequence[Sequence[int]]) -> torch.Tensor:
    """`scores` `(histories, items)` with each history's excluded items at -inf."""
    scores = scores.clone(memory_format=torch.contiguous_format)
    for row, positions in enumerate(excluded):
        scores[row, list(positions)] = -torch.inf
    return scores


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among the items of its row, ties counted against it (excluded items are -inf)."""
    return (scores >= scores.gather(1, targets.unsqueeze(1))).sum(dim=1)


class CatalogueRanker:
    """A model bound to a catalogue: ranks every item for histories (see the module docstring).

    Args:
        model: X-Cross or a single-domain recommender.
        catalogue: What `Catalogue.of` takes.
        collator: How the model reads text; by default `model_collator(model)` (the model's own tokenizer, prompt and
            `max_length`).
        rerank_top, first_stage, cache_dir, batch_size, popularity, index: As in `recommend`.
    """

    def __init__(self, model, catalogue, *, collator=None, rerank_top: int = DEFAULT_RERANK_TOP, first_stage=None,
                 cache_dir: str | os.PathLike | None = None, batch_size: int = ENCODE_BATCH_SIZE,
                 popularity: Mapping[str, float] | None = None, index: str = "auto"):
        if isinstance(rerank_top, bool) or not isinstance(rerank_top, int) or rerank_top < 1:
            raise CatalogueError(f"rerank_top must be a positive integer, got {rerank_top!r}.")
        self.model, self.collator = model.eval(), collator or own_collator(model)
        self.catalogue = replace(Catalogue.of(catalogue), fold_case=is_uncased(self.collator.tokenizer))
        self.rerank_top, self.batch_size = rerank_top, batch_size
        self.reranks = self.collator.scoring == "cross"
        if self.reranks:
            self.retriever = (first_stage or similarity_model(model_backbone(model))).eval()
            if self.retriever.config.scoring != "dual":
                raise CatalogueError("first_stage must score in dual mode (items encoded on their own): it encodes "
                                     "the whole catalogue once.")
            self.retriever_collator = model_collator(self.retriever, self.collator.max_length)
        elif first_stage is not None:
            raise CatalogueError("first_stage is for cross-scoring models; this model scores in dual mode and ranks "
                                 "the whole catalogue itself.")
        else:
            self.retriever, self.retriever_collator = model, self.collator
        cache_dir = default_cache_dir(model) if cache_dir is None else cache_dir
        self.items = item_representations(self.retriever, self.retriever_collator, self.catalogue, cache_dir,
                                          batch_size)
        self.item_popularity = self._item_popularity(popularity)
        self.search = ItemSearch(self.retriever.head, self.items, self.item_popularity, index)

    def _item_popularity(self, popularity: Mapping[str, float] | None) -> torch.Tensor | None:
        """`(items,)` counts for a retriever with a popularity prior: `popularity`, else the item_popularity.json
        saved beside it; titles it lacks count 0."""
        if getattr(self.retriever.config, "popularity_weight", None) is None:
            return None
        if popularity is None:
            directory = default_cache_dir(self.retriever)
            if directory is None:
                raise CatalogueError("This model scores with a popularity prior: pass popularity={title: count in the "
                                     "train histories}, or load the model from the directory its run saved (which "
                                     "holds item_popularity.json).")
            popularity = load_popularity(directory)
        else:
            popularity = checked_popularity(popularity, whole=False)
        return torch.tensor([popularity.get(title, 0) for title in self.catalogue.titles], dtype=torch.float32,
                            device=self.items.device)

    @torch.no_grad()
    def first_stage_scores(self, histories: list[list[str]]) -> torch.Tensor:
        """`(histories, items)`: the model's own scores in dual mode, the retriever's in cross mode."""
        queries = encode_histories(self.retriever, self.retriever_collator, histories, self.batch_size)
        scores = representation_scores(self.retriever, queries, self.items, self.item_popularity).float().cpu()
        if not torch.isfinite(scores).all():
            raise CatalogueError("The model gives NaN or infinite scores: it diverged; check its weights.")
        return scores

    def rerank(self, histories: list[list[str]], candidates: torch.Tensor,
               first_stage: torch.Tensor) -> torch.Tensor:
        """The model's scores `(histories, depth)` of the first stage's best items `candidates` (its scores of them:
        `first_stage`); excluded items among them (a history that leaves fewer than `depth`) keep -inf."""
        examples = [{"history": history, "candidates": [self.catalogue.titles[index] for index in row], "label": 0}
                    for history, row in zip(histories, candidates.tolist())]
        scores = candidate_scores(self.model, self.collator, examples, self.batch_size)
        return scores.masked_fill(first_stage == -torch.inf, -torch.inf)

    def top(self, histories: list[list[str]], excluded: Sequence[Sequence[int]],
            depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `depth` best items `(histories, depth)` (catalogue positions) and their scores, best first."""
        queries = encode_histories(self.retriever, self.retriever_collator, histories, self.batch_size)
        if not self.reranks:
            return self.search.top(queries, excluded, depth)
        candidates, first_stage = self.search.top(queries, excluded, max(depth, self.rerank_top))
        rescored = self.rerank(histories, candidates, first_stage)
        best = rescored.argsort(dim=1, descending=True, stable=True)[:, :depth]
        return candidates.gather(1, best), rescored.gather(1, best)

    def true_item_ranks(self, histories: list[list[str]], targets: torch.Tensor,
                        excluded: Sequence[Sequence[int]]) -> torch.Tensor:
        """The rank of each target `(histories,)` in the full ranking of the catalogue without its history's
        excluded items. Cross scoring: within the re-ranked top items, else below them in first-stage order."""
        scores = excluding(self.first_stage_scores(histories), excluded)
        if not self.reranks:
            return ranks_of(scores, targets)
        candidates = scores.argsort(dim=1, descending=True, stable=True)[:, :min(self.rerank_top, len(self.catalogue))]
        rescored = self.rerank(histories, candidates, scores.gather(1, candidates))
        is_target = candidates == targets.unsqueeze(1)
        target_score = torch.where(is_target, rescored, -torch.inf).amax(dim=1, keepdim=True)
        ranks_in_top = (rescored >= target_score).sum(dim=1)
        ranks_below = candidates.shape[1] + ranks_of(scores.scatter(1, candidates, -torch.inf), targets)
        return torch.where(is_target.any(dim=1), ranks_in_top, ranks_below)

    def recommend(self, histories: Sequence[Sequence], top_k: int = 10,
                  exclude_history: bool = True) -> list[list[RecommendedItem]]:
        """The `top_k` items for each history, best first (see `recommend`)."""
        if isinstance(histories, str | bytes) or not isinstance(histories, Sequence) or not histories:
            raise CatalogueError("histories must be a non-empty list of histories, each a list of titles or item "
                                 "ids; for one user pass [history].")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise CatalogueError(f"top_k must be a positive integer, got {top_k!r}.")
        if top_k > len(self.catalogue):
            raise CatalogueError(f"top_k={top_k} is larger than the catalogue ({len(self.catalogue)} items); ask "
                                 f"for at most {len(self.catalogue)}.")
        resolved = [self.catalogue.resolve(history, index) for index, history in enumerate(histories)]
        excluded = [positions if exclude_history else [] for _, positions in resolved]
        for index, positions in enumerate(excluded):
            available = len(self.catalogue) - len(set(positions))
            if top_k > available:
                raise CatalogueError(f"top_k={top_k}, but only {available} of the catalogue's {len(self.catalogue)} "
                                     f"items lie outside history {index}; lower top_k or pass exclude_history=False.")
        recommendations = []
        for start in range(0, len(resolved), HISTORIES_PER_CHUNK):
            chunk = slice(start, start + HISTORIES_PER_CHUNK)
            positions, scores = self.top([titles for titles, _ in resolved[chunk]], excluded[chunk], top_k)
            recommendations += [[RecommendedItem(self.catalogue.item_ids[index], self.catalogue.titles[index], score,
                                                 rank)
                                 for rank, (index, score) in enumerate(zip(row, row_scores), start=1)]
                                for row, row_scores in zip(positions.tolist(), scores.tolist())]
        return recommendations


def recommend(model, histories: Sequence[Sequence], catalogue, top_k: int = 10, exclude_history: bool = True, *,
              rerank_top: int = DEFAULT_RERANK_TOP, first_stage=None, cache_dir: str | os.PathLike | None = None,
              batch_size: int = ENCODE_BATCH_SIZE, popularity: Mapping[str, float] | None = None,
              index: str = "auto") -> list[list[RecommendedItem]]:
    """`model.recommend`: see `modeling_xcross.recommending.CatalogueRecommendationMixin.recommend`."""
    ranker = CatalogueRanker(model, catalogue, rerank_top=rerank_top, first_stage=first_stage, cache_dir=cache_dir,
                             batch_size=batch_size, popularity=popularity, index=index)
    return ranker.recommend(histories, top_k, exclude_history)
