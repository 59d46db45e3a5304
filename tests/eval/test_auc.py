"""ROC-AUC equals scikit-learn's roc_auc_score (ties included); top-1 accuracy equals top_k_accuracy_score."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, top_k_accuracy_score

from recipe.eval.metrics.auc import roc_auc, top1_accuracy


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=500)
    scores = rng.integers(0, 20, size=500) / 20  # few distinct values: many ties across both classes
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.2, 0.3])


def test_top1_accuracy_equals_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 7))
    labels = rng.integers(0, 7, size=300)
    assert top1_accuracy(scores, labels) == top_k_accuracy_score(labels, scores, k=1, labels=range(7))
