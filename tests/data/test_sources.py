"""Source configs, microbatch splitting, sample/token counting and the eval loader."""

import os

import pytest
import torch

from recipe.data.sources import (SourceConfig, StreamConfig, build_eval_dataloader, build_train_dataloader,
                                 num_samples_in_batch, num_tokens_in_batch, split_batch)
from recipe.tokens import IGNORE_INDEX


def test_source_config_defaults_and_validation():
    cfg = SourceConfig(kind="pairs", batch_size=8, streams={"a": {"remote": "s3://b/a", "proportion": 2.0}})
    assert cfg.max_tokens == 32 and cfg.streams["a"] == StreamConfig(remote="s3://b/a", proportion=2.0)
    assert SourceConfig(kind="interleaved", batch_size=1, streams={"a": {"remote": "x"}}).max_tokens == 256
    with pytest.raises(ValueError, match="unknown source kind"):
        SourceConfig(kind="video", batch_size=1, streams={"a": {"remote": "x"}})
    with pytest.raises(ValueError, match="at least one stream"):
        SourceConfig(kind="pairs", batch_size=1, streams={})


@pytest.fixture(scope="module")
def step_batch(sources, flamingo_tokenizer, image_transform):
    spec = build_train_dataloader(sources, flamingo_tokenizer, image_transform, seed=0, num_workers=0)
    return spec, next(iter(spec.dataloader))


def test_batch_format(step_batch, flamingo_tokenizer):
    spec, batch = step_batch
    laion, mmc4 = batch["laion"], batch["mmc4"]
    reasons = spec.dataloader.dataset.rejection_reasons
    assert laion["rejected"].shape == (4, len(reasons["laion"])) and mmc4["rejected"].shape == (2, len(reasons["mmc4"]))
    assert set(laion) == set(mmc4) == {"input_ids", "attention_mask", "labels", "images", "num_images", "sample_idx",
                                       "rejected"}
    assert laion["images"].shape == (4, 1, 3, 32, 32) and laion["input_ids"].shape[1] <= 32
    assert mmc4["images"].shape == (2, 6, 3, 32, 32) and mmc4["input_ids"].shape == (2, 64)
    image_id = flamingo_tokenizer.convert_tokens_to_ids("<image>")
    for b in (laion, mmc4):
        assert b["input_ids"].dtype == b["labels"].dtype == torch.int64
        assert torch.equal((b["input_ids"] == image_id).sum(1), b["num_images"])  # one slot per <image> token
        assert (b["labels"][b["attention_mask"] == 0] == IGNORE_INDEX).all()
        for row, n in zip(b["images"], b["num_images"]):
            assert row[:n].abs().sum((1, 2, 3)).gt(0).all() and not row[n:].any()


def test_counts(step_batch):
    _, batch = step_batch
    assert num_samples_in_batch(batch) == 6
    tokens = num_tokens_in_batch(batch)
    assert tokens["total"] == int(batch["laion"]["attention_mask"].sum() + batch["mmc4"]["attention_mask"].sum())
    assert 0 < tokens["loss_generating"] < tokens["total"]


@pytest.mark.parametrize("mb,chunks,mmc4_sizes", [(2, 2, [1, 1]), (1, 4, [1, 1]), (8, 1, [2]), (3, 2, [1, 1])])
def test_split_batch_keeps_source_proportions(step_batch, mb, chunks, mmc4_sizes):
    spec, batch = step_batch
    parts = spec.split_batch(batch, mb)
    assert len(parts) == chunks
    assert [len(p["mmc4"]["input_ids"]) for p in parts if "mmc4" in p] == mmc4_sizes
    assert all(len(p["laion"]["input_ids"]) <= mb for p in parts)
    for name in batch:
        for key in batch[name]:
            joined = torch.cat([p[name][key] for p in parts if name in p])
            assert torch.equal(joined, batch[name][key])
    assert sum(num_samples_in_batch(p) for p in parts) == num_samples_in_batch(batch)


@pytest.mark.parametrize("mb,laion_sizes,mmc4_sizes", [(2, [2, 2], [2]), (3, [2, 2], [2]), (8, [4], [2]), (1, [1] * 4, [1, 1])])
def test_per_source_microbatches_hold_one_source_each(step_batch, mb, laion_sizes, mmc4_sizes):
    _, batch = step_batch
    parts = split_batch(batch, mb, per_source=True)
    assert [list(p) for p in parts] == [["laion"]] * len(laion_sizes) + [["mmc4"]] * len(mmc4_sizes)
    assert [len(p[n]["input_ids"]) for p in parts for n in p] == laion_sizes + mmc4_sizes
    for name in batch:
        for key in batch[name]:
            assert torch.equal(torch.cat([p[name][key] for p in parts if name in p]), batch[name][key])


def test_split_batch_needs_an_integer_microbatch(step_batch):
    with pytest.raises(ValueError, match="positive int"):
        split_batch(step_batch[1], 0.5)


def test_eval_loader_is_one_unshuffled_pass(mds_root, flamingo_tokenizer, image_transform):
    cfg = SourceConfig(kind="interleaved", batch_size=5, max_tokens=64, min_image_bytes=0,
                       streams={"gpt": {"remote": os.path.join(mds_root, "chatgpt")}})
    spec = build_eval_dataloader("chatgpt", cfg, flamingo_tokenizer, image_transform, num_workers=0)
    batches = list(spec.dataloader)
    assert [spec.get_num_samples_in_batch(b) for b in batches] == [5, 5, 2]
    assert [i for b in batches for i in b["chatgpt"]["sample_idx"].tolist()] == list(range(12))
    assert list(spec.dataloader)[0]["chatgpt"]["sample_idx"].tolist() == [0, 1, 2, 3, 4]
