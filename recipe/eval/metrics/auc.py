"""ROC-AUC and top-1 accuracy for classification evaluations (e.g. Hateful Memes, ImageNet).

`roc_auc` equals scikit-learn's `roc_auc_score` for binary labels: the probability that a random positive
scores above a random negative, tied scores counting one half (the Mann-Whitney statistic with average ranks,
which is the area under the ROC curve with tied scores joined by one straight segment).
"""

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (1 = positive)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both positive and negative labels")
    rank_sum = rankdata(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def top1_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of rows of `scores` (N, classes) whose highest-scoring class is the label (first on ties)."""
    return float(np.mean(np.argmax(np.asarray(scores), axis=1) == np.asarray(labels)))
