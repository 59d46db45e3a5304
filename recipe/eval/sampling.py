"""Which test examples a few-shot evaluation scores, and which training examples it shows them as
demonstrations, drawn exactly as OpenFlamingo's `open_flamingo/eval/evaluate.py` draws them at random.

The reference, for each trial seed: seeds NumPy's global generator with the seed; draws the evaluated subset of
the test set (`utils.prepare_eval_samples`: `np.random.choice(len(test), num_samples, replace=False)`), then from
the same generator the query set of the training set (`utils.get_query_set`); orders the subset with a
`DistributedSampler` (shuffled with seed 0 at epoch 0, padded to a multiple of the world size by repeating its
first positions) that gives each rank its share; then seeds Python's `random` with seed + rank and draws each
evaluated example's demonstrations in order with `random.sample(query_set, num_shots)` (batch sizes do not
change these draws). Here the same draws come from private generators of the same kinds
(`np.random.RandomState`, `random.Random`, the sampler's own `torch.Generator`), so the global random state is
left alone. Not reproduced: RICES demonstrations, and classification's prompt ensembling, which shuffles the
drawn demonstrations with the global `random` between batches and so changes the later draws.
"""

import random
from dataclasses import dataclass

import numpy as np
from torch.utils.data.distributed import DistributedSampler


@dataclass
class FewShotDraws:
    eval_indices: list[int]  # test-set indices this rank evaluates, in order (padding repeats a few)
    query_indices: list[int]  # training-set indices of the query set, in drawn order
    demos: list[list[int]]  # per evaluated example, the training-set indices of its demonstrations, in order


def draw_few_shot(seed: int, test_size: int, train_size: int, num_samples: int | None, query_set_size: int,
                  num_shots: int, world_size: int = 1, rank: int = 0) -> FewShotDraws:
    """All draws of one trial on one rank. `num_samples=None` evaluates the whole test set (in drawn order);
    `num_shots` is the number of demonstrations drawn: the reference draws 2 (shown as text only) for 0 shots."""
    subset, query = draw_subsets(seed, test_size, num_samples, train_size, query_set_size)
    evaluated = [subset[position] for position in rank_order(len(subset), world_size, rank)]
    demos = draw_demos(seed, rank, query_set_size, num_shots, len(evaluated))
    return FewShotDraws(evaluated, query, [[query[i] for i in positions] for positions in demos])


def draw_subsets(seed: int, test_size: int, num_samples: int | None, train_size: int,
                 query_set_size: int) -> tuple[list[int], list[int]]:
    """The evaluated subset of the test set and the query set of the training set, as index lists."""
    num_samples = test_size if num_samples is None else num_samples
    _check_sample("num_samples", num_samples, "test set", test_size)
    _check_sample("query_set_size", query_set_size, "training set", train_size)
    generator = np.random.RandomState(seed)  # the legacy generator np.random.seed() seeds
    subset = generator.choice(test_size, num_samples, replace=False)
    query = generator.choice(train_size, query_set_size, replace=False)
    return subset.tolist(), query.tolist()


def rank_order(num_items: int, world_size: int, rank: int) -> list[int]:
    """The positions of a subset of `num_items` that `rank` evaluates, in order."""
    return list(DistributedSampler(range(num_items), num_replicas=world_size, rank=rank))


def draw_demos(seed: int, rank: int, query_set_size: int, num_shots: int, num_examples: int) -> list[list[int]]:
    """Per evaluated example, the query-set positions of its demonstrations."""
    generator = random.Random(seed + rank)
    # random.sample picks positions from the population's length alone, so a range stands in for the query set
    return [generator.sample(range(query_set_size), num_shots) for _ in range(num_examples)]


def _check_sample(name: str, size: int, population: str, population_size: int) -> None:
    if not 0 <= size <= population_size:
        raise ValueError(f"{name}={size} must be between 0 and the {population}'s size, {population_size}")
