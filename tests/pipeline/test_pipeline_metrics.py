"""The ranking metric module, loaded through `evaluate`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modeling_xcross.pipeline.metrics import METRIC_KEYS, compute_metrics, load_ranking_metric


@pytest.fixture(scope="module")
def metric():
    return load_ranking_metric()


def test_hand_computed_values(metric):
    scores = [[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.1, 0.4]]
    result = metric.compute(predictions=scores, references=[2, 0])  # ranks 2 and 3
    assert result["hit@1"] == 0 and result["hit@3"] == 1 and result["hit@10"] == 1
    assert result["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    assert result["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert list(result) == list(METRIC_KEYS)


def test_ties_count_against_the_true_item(metric):
    result = metric.compute(predictions=np.zeros((3, 30)), references=[0, 5, 29])
    assert result["hit@1"] == 0 and result["hit@10"] == 0 and result["mrr"] == pytest.approx(1 / 30)
    perfect = metric.compute(predictions=np.eye(30)[[4, 7]], references=[4, 7])
    assert perfect == {key: 1.0 for key in METRIC_KEYS}


def test_bad_inputs_are_refused(metric):
    with pytest.raises(ValueError, match="index a candidate"):
        metric.compute(predictions=[[1.0, 2.0]], references=[2])
    with pytest.raises(ValueError, match="1 of 2 score rows are NaN or infinite: the model diverged"):
        metric.compute(predictions=[[1.0, 2.0], [float("nan"), 0.5]], references=[0, 1])


def test_trainer_hook():
    class Prediction:
        predictions = np.array([[1.0, 3.0, 2.0]])
        label_ids = np.array([1])

    assert compute_metrics(Prediction())["hit@1"] == 1.0
