"""Synthetic corpora at realistic sizes for the benchmarks: JPEGs of ~30-100 KB at 256-512 px, LAION-like
captions of ~17 tokens, MMC4-like documents with 2-6 images and ~256 tokens. Written straight as MDS in the
schemas of docs/DESIGN.md with recipe.offline.mds (the converters have their own benchmark)."""

from __future__ import annotations

import io
import json
import os
import random

import numpy as np
from PIL import Image

SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + list("aeiou")


def pseudo_words(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def bench_tokenizer(out_dir: str, vocab_size: int = 50_000) -> str:
    """A byte-level BPE of about the size of the GPT-NeoX/MPT tokenizers, trained offline in seconds."""
    from recipe.offline.assets import train_tokenizer

    rng = random.Random(1)
    words = pseudo_words(60_000)
    texts = [" ".join(rng.choice(words) for _ in range(50)) for _ in range(20_000)]
    return train_tokenizer(texts, out_dir, vocab_size=vocab_size)


def jpeg_pool(n: int, seed: int = 0) -> list[tuple[bytes, int, int]]:
    """`n` distinct JPEGs (bytes, width, height) of 256-512 px: smooth colour fields plus texture, so the
    encoded size lands around 30-100 KB like web photos."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(256, 513, size=2))
        low = rng.integers(0, 256, size=(h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
        noise = rng.normal(0, 18, size=(h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=85)
        pool.append((buf.getvalue(), w, h))
    return pool


def write_pairs(out: str, n: int, pool, seed: int = 0) -> str:
    from recipe.offline.mds import pair_row, write_pairs as write

    rng = random.Random(seed)
    words = pseudo_words(20_000, seed)

    def rows():
        for i in range(n):
            img, wd, ht = pool[rng.randrange(len(pool))]
            caption = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
            yield pair_row(f"{i:09d}", img, caption, wd, ht, similarity=0.3)
    return write(out, rows(), size_limit=1 << 26)


def write_interleaved(out: str, n: int, pool, seed: int = 0) -> str:
    from recipe.offline.mds import interleaved_row, write_interleaved as write

    rng = random.Random(seed)
    words = pseudo_words(20_000, seed + 1)

    def rows():
        for i in range(n):
            n_sent = rng.randint(10, 16)
            texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 16))) + "." for _ in range(n_sent)]
            n_img = rng.randint(2, 6)
            chosen = [pool[rng.randrange(len(pool))] for _ in range(n_img)]
            targets = rng.sample(range(n_sent), n_img)
            sim = [[round(rng.uniform(0.1, 0.2), 4) for _ in range(n_sent)] for _ in range(n_img)]
            for k, t in enumerate(targets):
                sim[k][t] = round(rng.uniform(0.25, 0.4), 4)
            meta = [{"matched_text_index": t, "matched_sim": sim[k][t], "image_name": f"{i}-{k}.jpg", "raw_url": "",
                     "width": c[1], "height": c[2]} for k, (c, t) in enumerate(zip(chosen, targets))]
            yield interleaved_row(f"{i:09d}", "mmc4", texts, [c[0] for c in chosen], meta, sim)
    return write(out, rows(), size_limit=1 << 26)


def write_corpus(root: str, n_pairs: int, n_docs: int, pool_size: int = 256, seed: int = 0) -> dict[str, str]:
    """Write `laion/` and `mmc4/` MDS folders under `root` and return their paths; an existing corpus of the
    same pool and seed with at least as many samples is reused."""
    paths = {"laion": os.path.join(root, "laion"), "mmc4": os.path.join(root, "mmc4")}
    stamp = os.path.join(root, "corpus.json")
    want = {"n_pairs": n_pairs, "n_docs": n_docs, "pool_size": pool_size, "seed": seed}
    if os.path.exists(stamp):
        have = json.load(open(stamp))
        if all(have[k] >= want[k] if k.startswith("n_") else have[k] == want[k] for k in want):
            return paths
    pool = jpeg_pool(pool_size, seed)
    for p in paths.values():
        if os.path.exists(p):
            import shutil
            shutil.rmtree(p)
    write_pairs(paths["laion"], n_pairs, pool, seed)
    write_interleaved(paths["mmc4"], n_docs, pool, seed)
    with open(stamp, "w") as f:
        json.dump(want, f)
    return paths
