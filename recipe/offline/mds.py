"""MDS shards written directly in the schemas of docs/DESIGN.md (`pairs`, `interleaved`), without convert/: for
tests of the loaders and for benchmarks that time reading, not conversion."""

from __future__ import annotations

from collections.abc import Iterable

PAIRS_COLUMNS = {"key": "str", "image": "bytes", "caption": "str", "url": "str", "width": "int32",
                 "height": "int32", "similarity": "float64"}
INTERLEAVED_COLUMNS = {"key": "str", "kind": "str", "url": "str", "texts": "json", "images": "bytes",
                       "image_sizes": "json", "image_meta": "json", "similarity": "json"}


def pair_row(key: str, image: bytes, caption: str, width: int, height: int, similarity: float = float("nan"),
             url: str = "") -> dict:
    return {"key": key, "image": image, "caption": caption, "url": url, "width": width, "height": height,
            "similarity": similarity}


def interleaved_row(key: str, kind: str, texts: list[str], images: list[bytes], image_meta: list[dict],
                    similarity: list[list[float]], url: str = "") -> dict:
    """`kind` 'mmc4' (similarity: images x sentences) or 'fixed' (similarity `[]`; image k is placed before
    `texts[image_meta[k]["matched_text_index"]]`)."""
    return {"key": key, "kind": kind, "url": url, "texts": texts, "images": b"".join(images),
            "image_sizes": [len(b) for b in images], "image_meta": image_meta, "similarity": similarity}


def _write(out: str, columns: dict, rows: Iterable[dict], size_limit: int) -> str:
    from streaming import MDSWriter

    with MDSWriter(out=out, columns=columns, size_limit=size_limit) as w:
        for row in rows:
            w.write(row)
    return out


# Small shards by default, so that even a tiny dataset spans several (shard boundaries get exercised).
def write_pairs(out: str, rows: Iterable[dict], size_limit: int = 1 << 14) -> str:
    return _write(out, PAIRS_COLUMNS, rows, size_limit)


def write_interleaved(out: str, rows: Iterable[dict], size_limit: int = 1 << 14) -> str:
    return _write(out, INTERLEAVED_COLUMNS, rows, size_limit)
