"""CIDEr-D as the COCO caption evaluation computes it.

Matches pycocoevalcap's `Cider` scorer: n-grams of orders 1..4, tf-idf weights whose document frequencies
come from the references of the evaluated set itself (an n-gram counts once per image), per-order cosine
similarity with the candidate's weights clipped at the reference's, a Gaussian length penalty (sigma 6),
the mean over orders and references, times 10. Inputs are tokenized captions (see ptb_tokenize.py);
callers report the corpus score times 100.
"""

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

NGram = tuple[str, ...]


def cider_d(candidates: Mapping[Hashable, Sequence[str]],
            references: Mapping[Hashable, Sequence[Sequence[str]]],
            n: int = 4, sigma: float = 6.0) -> tuple[float, dict[Hashable, float]]:
    """(corpus score, {image: score}) for one tokenized candidate and its tokenized references per image."""
    if candidates.keys() != references.keys():
        raise ValueError("candidates and references must cover the same images")
    if any(not refs for refs in references.values()):
        raise ValueError("every image needs at least one reference")
    ref_counts = {key: [_ngram_counts(r, n) for r in refs] for key, refs in references.items()}
    doc_freq = Counter(g for counts in ref_counts.values() for g in set().union(*counts))
    log_images = math.log(len(references))

    def vector(counts: Counter[NGram]) -> _Vector:
        return _Vector(counts, doc_freq, log_images, n)

    scores = {}
    for key, tokens in candidates.items():
        cand = vector(_ngram_counts(tokens, n))
        per_order = [0.0] * n
        for counts in ref_counts[key]:
            for order, value in enumerate(cand.similarity(vector(counts), sigma)):
                per_order[order] += value
        scores[key] = 10.0 * sum(per_order) / n / len(ref_counts[key])
    return sum(scores.values()) / len(scores), scores


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[NGram]:
    return Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))


class _Vector:
    """tf-idf weights of one caption, split by n-gram order, with their norms."""

    def __init__(self, counts: Counter[NGram], doc_freq: Counter[NGram], log_images: float, n: int):
        self.weights: list[dict[NGram, float]] = [{} for _ in range(n)]
        for gram, tf in counts.items():
            # an n-gram absent from all references gets document frequency 1, as in the reference
            self.weights[len(gram) - 1][gram] = tf * (log_images - math.log(max(1.0, doc_freq[gram])))
        self.norms = [math.sqrt(sum(w * w for w in order.values())) for order in self.weights]
        # The reference's length is its count of bigrams (words - 1), which is what the penalty compares.
        self.length = sum(tf for gram, tf in counts.items() if len(gram) == 2)

    def similarity(self, ref: "_Vector", sigma: float) -> list[float]:
        penalty = math.exp(-((self.length - ref.length) ** 2) / (2 * sigma ** 2))
        values = []
        for mine, theirs, norm, ref_norm in zip(self.weights, ref.weights, self.norms, ref.norms):
            # CIDEr-D clips the candidate's weight at the reference's before the dot product
            dot = sum(min(w, theirs.get(g, 0.0)) * theirs.get(g, 0.0) for g, w in mine.items())
            values.append((dot / (norm * ref_norm) if norm and ref_norm else dot) * penalty)
        return values
