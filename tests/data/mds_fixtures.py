"""The data tests' sample content (tiny 32 px noise JPEGs, random word sentences) as MDS rows, and an upstream
corpus of it converted with convert/; the writers are recipe.offline's."""

from __future__ import annotations

import io
import os
import random

import numpy as np
from PIL import Image

from recipe.offline.mds import interleaved_row, pair_row
from recipe.offline.upstream import (chatgpt_sequence, mmc4_document, write_img2dataset_tar, write_jsonl,
                                     write_mmc4_shard)

WORDS = ["red", "green", "blue", "circle", "square", "a", "photo", "of", "the", "big", "small", "shows"]


def jpeg(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + "."


def pair_rows(n: int, prefix: str = "p", broken: tuple[int, ...] = ()) -> list[dict]:
    rng = random.Random(n)
    return [pair_row(f"{prefix}{i:05d}", b"not an image" if i in broken else jpeg(i), f" {sentence(rng)} ", 32, 32)
            for i in range(n)]


def _meta(matches: list[int], sim: float | None) -> list[dict]:
    return [{"matched_text_index": t, "matched_sim": sim, "image_name": f"{k}.jpg", "raw_url": "", "width": 32,
             "height": 32} for k, t in enumerate(matches)]


def mmc4_row(key: str, n_sent: int, matches: list[int], seed: int, sim_hi: float = 0.3) -> dict:
    """An MMC4 document whose image k best matches sentence `matches[k]` (similarity `sim_hi`, others 0.1)."""
    rng = random.Random(seed)
    texts = [sentence(rng) for _ in range(n_sent)]
    sim = [[sim_hi if j == t else 0.1 for j in range(n_sent)] for t in matches]
    return interleaved_row(key, "mmc4", texts, [jpeg(seed * 10 + k) for k in range(len(matches))],
                           _meta(matches, sim_hi), sim)


def fixed_row(key: str, segments: list[str], positions: list[int], seed: int) -> dict:
    return interleaved_row(key, "fixed", segments, [jpeg(seed * 10 + k) for k in range(len(positions))],
                           _meta(positions, None), [])


def mmc4_rows(n: int, prefix: str = "m") -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        n_sent = rng.randint(3, 6)
        matches = rng.sample(range(n_sent), rng.randint(1, min(3, n_sent)))
        rows.append(mmc4_row(f"{prefix}{i:05d}", n_sent, matches, seed=i))
    return rows


def upstream_corpus(root: str, n_pairs: int = 48, n_docs: int = 40, n_gpt: int = 12) -> dict[str, str]:
    """Write the rows as upstream-format inputs (an img2dataset tar, an MMC4 shard with an image folder, a ChatGPT
    jsonl) and convert them with convert/ into MDS; returns {name: MDS folder}."""
    from convert.chatgpt_to_mds import convert_chatgpt
    from convert.laion_to_mds import convert_laion
    from convert.mmc4_to_mds import convert_mmc4

    up = os.path.join(root, "upstream")
    tar_path = write_img2dataset_tar(os.path.join(up, "00000.tar"), [
        (row["key"], row["image"], row["caption"], {"url": "", "width": 32, "height": 32})
        for row in pair_rows(n_pairs)])

    os.makedirs(os.path.join(up, "images"), exist_ok=True)
    documents = []
    for row in mmc4_rows(n_docs):
        ends = np.cumsum(row["image_sizes"])
        names = [f"{row['key']}-{k}.jpg" for k in range(len(row["image_sizes"]))]
        for name, size, end in zip(names, row["image_sizes"], ends):
            with open(os.path.join(up, "images", name), "wb") as f:
                f.write(row["images"][end - size:end])
        documents.append(mmc4_document(row["key"], row["texts"], names,
                                       [m["matched_text_index"] for m in row["image_meta"]], row["similarity"]))
    zip_path = write_mmc4_shard(os.path.join(up, "docs_shard_0_v2.jsonl.zip"), documents)

    rng = random.Random(5)
    gpt_path = write_jsonl(os.path.join(up, "gpt.jsonl"), [
        chatgpt_sequence(f"g{i:05d}", [sentence(rng) for _ in range(3)], [jpeg(5000 + 10 * i + k) for k in (1, 2)])
        for i in range(n_gpt)])

    out = {name: os.path.join(root, name) for name in ("laion", "mmc4", "chatgpt")}
    small = {"shard_size": 1 << 14, "progress_bar": False}
    convert_laion([tar_path], out["laion"], **small)
    convert_mmc4([zip_path], out["mmc4"], image_dir=os.path.join(up, "images"), image_layout="flat", **small)
    convert_chatgpt([gpt_path], out["chatgpt"], **small)
    return out
