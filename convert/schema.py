"""The two MDS schemas the converters write, `pairs` and `interleaved` (DESIGN.md), and the builders of an
`interleaved` row."""

from __future__ import annotations

from typing import Callable

from convert.report import UnitStats
from convert.validate import ImageInfo, Reject, validate_image

PAIRS_COLUMNS = {
    "key": "str", "image": "bytes", "caption": "str", "url": "str",
    "width": "int32", "height": "int32", "similarity": "float64",
}
INTERLEAVED_COLUMNS = {
    "key": "str", "kind": "str", "url": "str", "texts": "json", "images": "bytes",
    "image_sizes": "json", "image_meta": "json", "similarity": "json",
}


Image_ = tuple[bytes, ImageInfo, dict]  # original bytes, decoded size, per-image metadata


def interleaved_sample(key: str, kind: str, url: str, texts: list[str], images: list[Image_],
                       similarity: list) -> dict:
    """One row of the `interleaved` MDS schema (DESIGN.md)."""
    meta = []
    for data, info, m in images:
        meta.append({
            "matched_text_index": int(m["matched_text_index"]),
            "matched_sim": m.get("matched_sim"),
            "image_name": m.get("image_name") or "",
            "raw_url": m.get("raw_url") or "",
            "width": info.width,
            "height": info.height,
        })
    return {
        "key": key, "kind": kind, "url": url or "", "texts": texts,
        "images": b"".join(d for d, _, _ in images), "image_sizes": [len(d) for d, _, _ in images],
        "image_meta": meta, "similarity": similarity,
    }


def fixed_sample(key: str, url: str, segments: list[str], names: list[str],
                 load: Callable[[str], tuple[bytes, dict]], options: dict, stats: UnitStats,
                 all_images: bool = False) -> dict:
    """An `interleaved` row of kind `fixed`: image k (`load(names[k])` -> bytes, metadata) sits between
    segments[k] and segments[k + 1]. An unusable image is counted by reason and dropped, its neighbouring
    text segments merged; a document left without images is rejected. `all_images`: an unusable image
    rejects the document instead (text written about its images must keep them all)."""
    assert len(segments) == len(names) + 1
    texts, kept = [segments[0]], []
    for name, segment in zip(names, segments[1:]):
        try:
            data, meta = load(name)
            info = validate_image(data, options["max_image_pixels"])
        except Reject as r:
            if all_images:
                raise
            stats.drop_image(r.reason)
            texts[-1] += segment
            continue
        kept.append((data, info, {**meta, "matched_sim": None, "matched_text_index": len(texts)}))
        texts.append(segment)
    if not kept:
        raise Reject("no_usable_image")
    return interleaved_sample(key, "fixed", url, texts, kept, [])
