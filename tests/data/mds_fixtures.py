"""MDS fixture writers in the DESIGN.md schemas (tiny 32 px images; small shards so datasets span several)."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

PAIRS_COLUMNS = {"key": "str", "image": "bytes", "caption": "str", "url": "str", "width": "int32",
                 "height": "int32", "similarity": "float64"}
INTERLEAVED_COLUMNS = {"key": "str", "kind": "str", "url": "str", "texts": "json", "images": "bytes",
                       "image_sizes": "json", "image_meta": "json", "similarity": "json"}
WORDS = ["red", "green", "blue", "circle", "square", "a", "photo", "of", "the", "big", "small", "shows"]


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
        matches = rng.sample(range(n_sent), rng.randint(1, min(3, n_sent)))
        rows.append(mmc4_row(f"{prefix}{i:05d}", n_sent, matches, seed=i))
    return rows


def fixed_rows(n: int, prefix: str = "g") -> list[dict]:
    rng = random.Random(11)
    rows = []
    for i in range(n):
        segs = [sentence(rng) for _ in range(3)]
        rows.append(fixed_row(f"{prefix}{i:05d}", segs, [0, 2], seed=1000 + i))
    return rows


def upstream_corpus(root: str, n_pairs: int = 48, n_docs: int = 40, n_gpt: int = 12) -> dict[str, str]:
    """Write upstream-format inputs (an img2dataset tar, an MMC4 jsonl.zip with an image folder, a ChatGPT
    jsonl) and convert them with convert/ into MDS; returns {name: MDS folder}."""
    import base64
    import json
    import os
    import tarfile
    import zipfile

    from convert.chatgpt_to_mds import convert_chatgpt
    from convert.laion_to_mds import convert_laion
    from convert.mmc4_to_mds import convert_mmc4

    up = os.path.join(root, "upstream")
    os.makedirs(os.path.join(up, "images"), exist_ok=True)
    tar_path = os.path.join(up, "00000.tar")
    with tarfile.open(tar_path, "w") as tf:
        for row in pair_rows(n_pairs):
            meta = {"key": row["key"], "url": "", "width": 32, "height": 32, "status": "success"}
            for ext, data in (("jpg", row["image"]), ("txt", row["caption"].encode()), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{row['key']}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))

    lines = []
    for row in mmc4_rows(n_docs):
        ends = np.cumsum(row["image_sizes"])
        infos = []
        for k, (size, meta) in enumerate(zip(row["image_sizes"], row["image_meta"])):
            name = f"{row['key']}-{k}.jpg"
            with open(os.path.join(up, "images", name), "wb") as f:
                f.write(row["images"][ends[k] - size:ends[k]])
            infos.append({"image_name": name, "raw_url": "", "matched_text_index": meta["matched_text_index"],
                          "matched_sim": meta["matched_sim"]})
        lines.append(json.dumps({"url": row["key"], "text_list": row["texts"], "image_info": infos,
                                 "similarity_matrix": row["similarity"], "could_have_url_duplicate": 0}))
    zip_path = os.path.join(up, "docs_shard_0_v2.jsonl.zip")
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("docs_shard_0_v2.jsonl", "\n".join(lines) + "\n")

    rng = random.Random(5)
    gpt_path = os.path.join(up, "gpt.jsonl")
    with open(gpt_path, "w") as f:
        for i in range(n_gpt):
            segs = [sentence(rng) for _ in range(3)]
            images = {f"_!_IMAGE{k}_!_": {"base64_image": base64.b64encode(jpeg(5000 + 10 * i + k)).decode()}
                      for k in (1, 2)}
            example = f"{segs[0]} _!_IMAGE1_!_ {segs[1]} _!_IMAGE2_!_ {segs[2]}"
            f.write(json.dumps({"is_gpt": True, "key": f"g{i:05d}", "example": example, "image_map": images}) + "\n")

    out = {name: os.path.join(root, name) for name in ("laion", "mmc4", "chatgpt")}
    small = {"shard_size": 1 << 14, "progress_bar": False}
    convert_laion([tar_path], out["laion"], **small)
    convert_mmc4([zip_path], out["mmc4"], image_dir=os.path.join(up, "images"), image_layout="flat", **small)
    convert_chatgpt([gpt_path], out["chatgpt"], **small)
    return out
