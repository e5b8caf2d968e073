"""The ranking metric module loaded through `evaluate`, and the Trainer's `compute_metrics` built on it."""

from __future__ import annotations

from pathlib import Path

import evaluate
import numpy as np

RANKING_METRICS_DIR = Path(__file__).resolve().parent / "ranking_metrics"
METRIC_KEYS = ("hit@1", "hit@3", "hit@10", "ndcg@3", "ndcg@10", "mrr")


def load_ranking_metric() -> evaluate.EvaluationModule:
    return evaluate.load(str(RANKING_METRICS_DIR))


def compute_metrics(prediction) -> dict[str, float]:
    """Trainer hook: ranking metrics from the candidates' logits and the true candidate indices."""
    scores = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return load_ranking_metric().compute(predictions=np.asarray(scores, dtype=np.float32),
                                         references=np.asarray(prediction.label_ids))
