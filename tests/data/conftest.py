"""Fixtures for the data tests: a tokenizer with the Flamingo tokens, a real open_clip eval transform, and
small MDS shards in the DESIGN.md schemas (tiny 32 px images; several shards per dataset)."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest
from PIL import Image

from recipe.tokens import END_OF_CHUNK, IMAGE, PAD

PAIRS_COLUMNS = {"key": "str", "image": "bytes", "caption": "str", "url": "str", "width": "int32",
                 "height": "int32", "similarity": "float64"}
INTERLEAVED_COLUMNS = {"key": "str", "kind": "str", "url": "str", "texts": "json", "images": "bytes",
                       "image_sizes": "json", "image_meta": "json", "similarity": "json"}
WORDS = ["red", "green", "blue", "circle", "square", "a", "photo", "of", "the", "big", "small", "shows"]


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


def jpeg(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + "."


def write_mds(out: str, columns: dict, rows: list[dict], size_limit: int = 1 << 14) -> str:
    from streaming import MDSWriter
    with MDSWriter(out=out, columns=columns, size_limit=size_limit) as w:
        for row in rows:
            w.write(row)
    return out


def pair_rows(n: int, prefix: str = "p", broken: tuple[int, ...] = ()) -> list[dict]:
    rng = random.Random(n)
    rows = []
    for i in range(n):
        img = b"not an image" if i in broken else jpeg(i)
        rows.append({"key": f"{prefix}{i:05d}", "image": img, "caption": f" {sentence(rng)} ", "url": "",
                     "width": 32, "height": 32, "similarity": float("nan")})
    return rows


def mmc4_row(key: str, n_sent: int, matches: list[int], seed: int, sim_hi: float = 0.3) -> dict:
    """An MMC4 document whose image k best matches sentence `matches[k]` (similarity `sim_hi`, others 0.1)."""
    rng = random.Random(seed)
    texts = [sentence(rng) for _ in range(n_sent)]
    imgs = [jpeg(seed * 10 + k) for k in range(len(matches))]
    sim = [[sim_hi if j == t else 0.1 for j in range(n_sent)] for t in matches]
    meta = [{"matched_text_index": t, "matched_sim": sim_hi, "image_name": f"{k}.jpg", "raw_url": "",
             "width": 32, "height": 32} for k, t in enumerate(matches)]
    return {"key": key, "kind": "mmc4", "url": "", "texts": texts, "images": b"".join(imgs),
            "image_sizes": [len(b) for b in imgs], "image_meta": meta, "similarity": sim}


def fixed_row(key: str, segments: list[str], positions: list[int], seed: int) -> dict:
    imgs = [jpeg(seed * 10 + k) for k in range(len(positions))]
    meta = [{"matched_text_index": p, "matched_sim": None, "image_name": f"{k}.jpg", "raw_url": "",
             "width": 32, "height": 32} for k, p in enumerate(positions)]
    return {"key": key, "kind": "fixed", "url": "", "texts": segments, "images": b"".join(imgs),
            "image_sizes": [len(b) for b in imgs], "image_meta": meta, "similarity": []}


def mmc4_rows(n: int, prefix: str = "m") -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        n_sent = rng.randint(3, 6)
        matches = rng.sample(range(n_sent), rng.randint(2, min(3, n_sent)))
        rows.append(mmc4_row(f"{prefix}{i:05d}", n_sent, matches, seed=i))
    return rows


def fixed_rows(n: int, prefix: str = "g") -> list[dict]:
    rng = random.Random(11)
    rows = []
    for i in range(n):
        segs = [sentence(rng) for _ in range(3)]
        rows.append(fixed_row(f"{prefix}{i:05d}", segs, [0, 2], seed=1000 + i))
    return rows


@pytest.fixture(scope="session")
def mds_root(tmp_path_factory):
    """laion/ (48 pairs, 2 broken images), mmc4/ (40 docs), chatgpt/ (12 fixed docs)."""
    root = tmp_path_factory.mktemp("mds")
    write_mds(os.path.join(root, "laion"), PAIRS_COLUMNS, pair_rows(48, broken=(5, 30)))
    write_mds(os.path.join(root, "mmc4"), INTERLEAVED_COLUMNS, mmc4_rows(40))
    write_mds(os.path.join(root, "chatgpt"), INTERLEAVED_COLUMNS, fixed_rows(12))
    return str(root)


@pytest.fixture(scope="session")
def sources(mds_root):
    """A two-source training config over the fixture shards (2 pairs + 1 doc per device at world size 1)."""
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
