"""Fixtures for the data tests: a tokenizer with the Flamingo tokens, a real open_clip eval transform, and
small MDS shards of LAION-like pairs, MMC4 documents and ChatGPT-style fixed documents."""

from __future__ import annotations

import os

import pytest

from mds_fixtures import upstream_corpus
from recipe.tokens import END_OF_CHUNK, IMAGE, PAD


@pytest.fixture(scope="session")
def flamingo_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK, IMAGE], "pad_token": PAD})
    return tok


@pytest.fixture(scope="session")
def image_transform():
    import open_clip
    return open_clip.image_transform(32, is_train=False)


@pytest.fixture(scope="session")
def mds_root(tmp_path_factory):
    """laion/ (48 pairs), mmc4/ (40 documents, 1-3 images each), chatgpt/ (12 fixed documents): upstream-format
    inputs run through the real converters in convert/."""
    root = tmp_path_factory.mktemp("mds")
    upstream_corpus(str(root))
    return str(root)


@pytest.fixture(scope="session")
def sources(mds_root):
    """A two-source training config over the fixture shards (4 pairs + 2 documents per device at world size 1)."""
    from recipe.data.sources import SourceConfig
    return {
        "laion": SourceConfig(kind="pairs", batch_size=4, epoch_size=40,
                              streams={"laion": {"remote": os.path.join(mds_root, "laion")}},
                              shuffle_seed=3, num_canonical_nodes=1, shuffle_block_size=16),
        "mmc4": SourceConfig(kind="interleaved", batch_size=2, epoch_size=24, max_tokens=64, min_image_bytes=0,
                             streams={"mmc4": {"remote": os.path.join(mds_root, "mmc4"), "proportion": 0.75},
                                      "chatgpt": {"remote": os.path.join(mds_root, "chatgpt"), "proportion": 0.25}},
                             shuffle_seed=5, num_canonical_nodes=1, shuffle_block_size=16),
    }
