"""Task metrics (finetuning/metrics.py): exact values against hand computations and scipy."""

import numpy as np
import pytest

from bertforge.config import compose
from bertforge.finetuning.metrics import compute_metrics, score_predictions


def test_metrics_exact_values():
    p, g = np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 0, 0, 1, 1])
    m = compute_metrics(["accuracy", "f1", "matthews_corr"], p, g)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["matthews_corr"] == pytest.approx((2 * 2 - 1 * 1) / np.sqrt(3 * 3 * 3 * 3))
    s = compute_metrics(["pearson", "spearman"], np.array([1.0, 2.0, 3.0, 5.0]), np.array([2.0, 1.0, 4.0, 4.0]))
    from scipy import stats

    assert s["pearson"] == pytest.approx(stats.pearsonr([1, 2, 3, 5], [2, 1, 4, 4])[0])
    assert s["spearman"] == pytest.approx(stats.spearmanr([1, 2, 3, 5], [2, 1, 4, 4])[0])


def test_klue_metrics_macro_f1_and_binary_f1_at_three():
    preds, gold = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    m = compute_metrics(["macro_f1"], preds, gold, num_labels=3)
    # class 0: P 1/2 R 1/2 F 1/2; class 1: P 1 R 1/2 F 2/3; class 2: P 2/3 R 1 F 4/5
    assert m["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    # a class nobody predicted or labelled still counts (as 0) when the task lists it
    assert compute_metrics(["macro_f1"], preds, gold, num_labels=4)["macro_f1"] == pytest.approx(
        (1 / 2 + 2 / 3 + 4 / 5) / 4
    )
    s_pred, s_gold = np.array([3.2, 2.9, 4.0, 1.0, 3.0]), np.array([3.5, 3.1, 2.0, 0.5, 3.0])
    # similar = score >= 3: pred [1,0,1,0,1], gold [1,1,0,0,1] -> tp 2, fp 1, fn 1 -> F1 2/3
    assert compute_metrics(["binary_f1"], s_pred, s_gold)["binary_f1"] == pytest.approx(2 / 3)
    metrics, score = score_predictions(compose(["task=klue_sts"]).task, s_pred, s_gold)
    assert set(metrics) == {"pearson", "binary_f1"} and score == pytest.approx(np.mean(list(metrics.values())))
    _, ynat_score = score_predictions(compose(["task=klue_ynat"]).task, preds, gold)
    assert ynat_score == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 7)  # scored on macro-F1 over its 7 topics
