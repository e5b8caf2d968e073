"""The dual head's starting settings, chosen on the target's validation users before training.

An untrained dual model ranks by the backbone's similarity plus a popularity prior, and what that start is worth
depends on the head's settings (the history's recency decay, the prior's weight against the cosine, the temperature)
more than on the streams; the best values differ by domain. The best reference chooses its own on validation users;
this chooses the model's the same way, so that training starts from the best untrained point:
- the history decay and the prior's weight per unit of cosine (w * tau) by validation MRR, at the configured
  temperature;
- with `choose_temperature`, also the temperature, by validation cross-entropy given those. Off by default: the
  cross-entropy of the untrained model asked for the softest temperature of the grid every time, and from there
  training learned less than from the configured one (research/results/ablation/).
Each title is encoded once; the grid itself costs a few matrix products. The choice depends only on the untrained
model and the validation lists, so a resumed run makes it again and gets the same settings.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..errors import XCrossError
from ..head import log_popularity
from ..inference.encoding import encode_items, evaluation_mode, item_mean_histories
from .metrics import load_ranking_metric

HISTORY_DECAYS = (0.3, 0.5, 0.7, 0.85, 1.0)
# The prior per unit of cosine, w * tau (the ranking depends on the two only through it); 0 is no prior.
PRIOR_RATIOS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)


@dataclass
class HeadStart:
    """The chosen settings, the validation MRR they give, and every setting tried."""

    history_decay: float
    temperature: float
    popularity_weight: float | None
    validation_mrr: float
    tried: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def choose_head_start(model, collator, examples: list[dict], choose_temperature: bool = False) -> HeadStart:
    """Choose, apply and return the head's start for `model` (dual scoring, item histories) on validation `examples`
    (`EvalSamples` items: history and candidate titles, label, and candidate_popularity with a prior): the model's
    config, its head's temperature and prior weight, and `collator`'s history decay are set to the choice."""
    if collator.scoring != "dual" or collator.history_encoding != "items":
        raise XCrossError("Choosing the head's start needs dual scoring with item histories (--scoring dual "
                          "--history-encoding items); pass --no-choose-start otherwise.")
    if not examples:
        raise XCrossError("Choosing the head's start needs validation users; raise --val-users.")
    histories = [example["history"] for example in examples]
    titles = list(dict.fromkeys([title for example in examples for title in example["candidates"]]
                                + [title for history in histories for title in history]))
    position = {title: index for index, title in enumerate(titles)}
    with evaluation_mode(model):
        items = encode_items(model, collator, titles)
    candidates = items[torch.tensor([[position[title] for title in example["candidates"]] for example in examples])]
    labels = torch.tensor([example["label"] for example in examples])
    has_prior = model.head.popularity_weight is not None
    prior = (log_popularity(torch.tensor([example["candidate_popularity"] for example in examples],
                                         dtype=torch.float32)) if has_prior else None)
    metric, tried, similarity = load_ranking_metric(), [], {}

    def scores(decay: float, ratio: float) -> torch.Tensor:
        """Validation scores per unit of cosine: the similarity plus `ratio` times the prior."""
        if decay not in similarity:
            collator.history_decay = decay
            similarity[decay] = model.head.similarity(item_mean_histories(collator, histories, titles, items),
                                                      candidates)
        return similarity[decay] + ratio * prior if has_prior else similarity[decay]

    for decay, ratio in itertools.product(HISTORY_DECAYS, PRIOR_RATIOS if has_prior else (0.0,)):
        mrr = metric.compute(predictions=scores(decay, ratio).numpy(), references=labels.numpy())["mrr"]
        tried.append({"history_decay": decay, "prior_ratio": ratio, "validation_mrr": mrr})
    best = max(tried, key=lambda row: row["validation_mrr"])  # the first of equals, in grid order
    decay, ratio = best["history_decay"], best["prior_ratio"]
    chosen = scores(decay, ratio)
    temperature = (min(TEMPERATURES, key=lambda tau: F.cross_entropy(chosen / tau, labels).item())
                   if choose_temperature else float(model.config.temperature))
    weight = ratio / temperature if has_prior else None
    collator.history_decay = decay
    model.config.history_decay, model.config.temperature = decay, temperature
    if has_prior:
        model.config.popularity_weight = weight
    model.head.set_start(temperature, weight)
    print(f"[train] head start chosen on {len(examples)} validation users: history decay {decay}, temperature "
          f"{temperature}, prior weight {weight if weight is None else round(weight, 4)} (validation MRR "
          f"{best['validation_mrr']:.4f})")
    return HeadStart(decay, temperature, weight, best["validation_mrr"], tried)
