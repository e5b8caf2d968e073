"""Ranking metrics for one relevant item among scored candidates, as an `evaluate` module.

    metric = evaluate.load("modeling_xcross/pipeline/ranking_metrics")
    metric.compute(predictions=scores (n, num_candidates), references=true_index (n,))

The rank of the true item counts every candidate scoring at least as high (ties count against it, so all-equal
scores rank it last). Hit@k = rank <= k, NDCG@k = 1 / log2(rank + 1) when rank <= k, MRR = mean 1 / rank.
This file is self-contained: `evaluate` copies it alone into its module cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = __doc__
_CITATION = "Hadad et al., X-Cross: Dynamic Integration of Language Models for Cross-Domain Sequential " \
            "Recommendation, SIGIR 2025."
_KWARGS_DESCRIPTION = """
Args:
    predictions: per-candidate scores, one list per example (higher is better).
    references: index of the true candidate of each example.
Returns:
    hit@1, hit@3, hit@10, ndcg@3, ndcg@10, mrr (means over examples).
"""
HIT_AT = (1, 3, 10)
NDCG_AT = (3, 10)


def true_item_ranks(scores, labels):
    """1-based rank of the true candidate, ties counted against it."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"predictions must be (n, num_candidates) and references (n,); got {scores.shape} and "
                         f"{labels.shape}.")
    if ((labels < 0) | (labels >= scores.shape[1])).any():
        raise ValueError(f"references must index a candidate (0..{scores.shape[1] - 1}).")
    if not np.isfinite(scores).all():
        # NaN compares false with everything, so a diverged model would otherwise rank every true item first.
        raise ValueError(f"{int((~np.isfinite(scores)).any(axis=1).sum())} of {len(scores)} score rows are NaN or "
                         "infinite: the model diverged; lower the learning rate (X-Cross: --fusion-learning-rate) "
                         "or check its weights.")
    true_scores = scores[np.arange(len(labels)), labels][:, None]
    return (scores >= true_scores).sum(axis=1)


def ranking_metrics(scores, labels):
    return metrics_of_ranks(true_item_ranks(scores, labels))


def metrics_of_ranks(ranks):
    """The metrics of 1-based ranks of the true items (of candidate lists, or of a full ranking)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    metrics = {f"hit@{k}": float(np.mean(ranks <= k)) for k in HIT_AT}
    for k in NDCG_AT:
        metrics[f"ndcg@{k}"] = float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0)))
    metrics["mrr"] = float(np.mean(1.0 / ranks))
    return metrics


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RankingMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references):
        return ranking_metrics(predictions, references)
