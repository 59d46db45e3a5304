"""Few-shot draws equal the reference's own: `utils.prepare_eval_samples`, `utils.get_query_set` and
`utils.sample_batch_demos_from_query_set`, run as `evaluate.py` runs them, on index-carrying stand-in datasets."""

import random

import numpy as np
import pytest
import torch
from open_flamingo.eval import utils
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from recipe.eval.sampling import draw_few_shot


@pytest.fixture
def global_rng_restored():
    """The reference seeds the global generators; put them back for the tests that follow."""
    states = np.random.get_state(), random.getstate(), torch.get_rng_state()
    yield
    np.random.set_state(states[0])
    random.setstate(states[1])
    torch.set_rng_state(states[2])


def _reference_draws(seed, test_size, train_size, num_samples, query_set_size, num_shots, batch_size,
                     world_size=1, rank=0):
    """evaluate.py's sequence of draws; the dataset items carry their own index so the draws can be read back."""
    test = [{"index": i} for i in range(test_size)]
    train = [{"index": i} for i in range(train_size)]
    np.random.seed(seed)
    loader = utils.prepare_eval_samples(test, num_samples, batch_size)
    if world_size > 1:
        # what rank `rank` of a `world_size`-process group builds: the same sampler, its group read explicitly
        sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank)
        loader = DataLoader(loader.dataset, batch_size=batch_size, sampler=sampler,
                            collate_fn=utils.custom_collate_fn)
    query_set = utils.get_query_set(train, query_set_size)
    utils.random_seed(seed, rank)
    evaluated, demos = [], []
    for batch in loader:
        evaluated += batch["index"]
        drawn = utils.sample_batch_demos_from_query_set(query_set, num_shots, len(batch["index"]))
        demos += [[item["index"] for item in example] for example in drawn]
    return evaluated, [item["index"] for item in query_set], demos


CASES = [  # seed, test size, train size, evaluated, query set size, shots, batch size
    (42, 50, 80, 20, 30, 4, 8),
    (0, 37, 100, None, 100, 2, 5),
    (1234, 200, 64, 64, 64, 8, 64),
    (7, 9, 12, 9, 5, 0, 4),
]


@pytest.mark.parametrize("seed, test_size, train_size, num_samples, query_set_size, num_shots, batch_size", CASES)
def test_one_process_equals_reference(process_group, global_rng_restored, seed, test_size, train_size,
                                      num_samples, query_set_size, num_shots, batch_size):
    expected = _reference_draws(seed, test_size, train_size, test_size if num_samples is None else num_samples,
                                query_set_size, num_shots, batch_size)
    ours = draw_few_shot(seed, test_size, train_size, num_samples, query_set_size, num_shots)
    assert (ours.eval_indices, ours.query_indices, ours.demos) == expected


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_each_rank_equals_reference(process_group, global_rng_restored, rank):
    # 20 evaluated examples over 3 ranks: the sampler pads to 21, so one example is evaluated twice
    expected = _reference_draws(5, 60, 90, 20, 40, 3, 4, world_size=3, rank=rank)
    ours = draw_few_shot(5, 60, 90, 20, 40, 3, world_size=3, rank=rank)
    assert (ours.eval_indices, ours.query_indices, ours.demos) == expected
    assert len(ours.eval_indices) == 7


def test_global_random_state_untouched():
    states = np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state().clone()
    draw_few_shot(3, 30, 30, 10, 20, 4, world_size=2, rank=1)
    assert np.array_equal(np.random.get_state()[1], states[0])
    assert random.getstate() == states[1]
    assert torch.equal(torch.get_rng_state(), states[2])


@pytest.mark.parametrize("num_samples, query_set_size", [(31, 5), (5, 31), (-1, 5)])
def test_oversized_draws_are_one_line_errors(num_samples, query_set_size):
    with pytest.raises(ValueError, match=r"must be between 0 and the (test|training) set's size, 30$"):
        draw_few_shot(0, 30, 30, num_samples, query_set_size, 2)
