"""Convert img2dataset output (WebDataset .tar shards or parquet with image bytes) to the `pairs` MDS schema.

    python convert/laion_to_mds.py --input /data/laion/{00000..00099}.tar --output s3://bucket/laion-mds

Images keep their original bytes (validated by a full decode); captions are stripped UTF-8.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator, Optional

from convert._common import (
    PAIRS_COLUMNS, Reject, Spec, UnitStats, base_parser, check_text, decode_utf8_text, expand_inputs, guarded,
    run_cli, tar_groups, validate_image,
)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _similarity(meta: dict) -> float:
    value = meta.get("similarity")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.nan
    return float(value)


def _pair(key: str, image: Optional[bytes], caption: str, meta: dict, options: dict) -> dict:
    info = validate_image(image, options["max_image_pixels"])
    url = meta.get("url")
    return {"key": key, "image": image, "caption": caption, "url": url if isinstance(url, str) else "",
            "width": info.width, "height": info.height, "similarity": _similarity(meta)}


def _read_tar(path: str, stats: UnitStats, options: dict) -> Iterator[dict]:
    def build(key: str, group: dict) -> dict:
        image = next((group[e] for e in IMAGE_EXTS if e in group), None)
        meta: Any = {}
        if "json" in group:
            try:
                meta = json.loads(group["json"].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise Reject("json_malformed") from None
            if not isinstance(meta, dict):
                raise Reject("json_malformed", "metadata is not an object")
        if "txt" in group or "caption" not in meta:
            caption = decode_utf8_text(group.get("txt"), "caption")
        else:  # no .txt member: img2dataset also records the caption in the metadata
            caption = check_text(meta["caption"], "caption")
        return _pair(key, image, caption, meta, options)

    return guarded(tar_groups(path), stats, build)


def _read_parquet(path: str, stats: UnitStats, options: dict) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception:  # pyarrow raises assorted types for a non-parquet file
        stats.input_errors["input_unreadable"] += 1
        return
    names = set(pf.schema_arrow.names)
    image_col = next((c for c in IMAGE_EXTS + ("image",) if c in names), None)
    if image_col is None:
        raise ValueError(f"{path}: parquet has no image column ({', '.join(IMAGE_EXTS)}): img2dataset writes "
                         "image bytes into parquet only with output_format=parquet; use its .tar shards instead")
    caption_col = "caption" if "caption" in names else ("txt" if "txt" in names else None)
    stem = os.path.basename(path).split(".")[0]
    row = 0
    for batch in pf.iter_batches(batch_size=256):
        for rec in batch.to_pylist():
            stats.records_read += 1
            key = rec.get("key")
            key = key if isinstance(key, str) and key else f"{stem}/{row}"
            row += 1
            try:
                image = rec.get(image_col)
                if isinstance(image, dict):  # HF-style {"bytes": ..., "path": ...}
                    image = image.get("bytes")
                caption = check_text(rec.get(caption_col) if caption_col else None, "caption")
                yield _pair(key, image, caption, rec, options)
            except Reject as r:
                stats.reject(r.reason, key, r.detail)


def read(path: str, url: str, options: dict, stats: UnitStats) -> Iterator[dict]:
    if url.endswith(".parquet"):
        return _read_parquet(path, stats, options)
    return _read_tar(path, stats, options)


SPEC = Spec(name="laion", columns=PAIRS_COLUMNS, suffixes=(".tar", ".parquet"), read=read)


def convert_laion(inputs: list[str], output: str, **kwargs: Any) -> dict:
    """Python API: see `convert._common.convert` for the keyword arguments; returns the report."""
    from convert._common import convert
    return convert("convert.laion_to_mds", _prefer_tars(inputs), output, **kwargs)


def _prefer_tars(inputs: list[str]) -> list[str]:
    """img2dataset's webdataset output folders also hold metadata-only parquet files: a plain folder (or
    s3:// prefix) stands for its tars when it has any, else for its parquet files."""
    out = []
    for item in inputs:
        if any(c in item for c in "*?[{") or item.endswith((".tar", ".parquet")):
            out.append(item)
            continue
        try:
            tars = expand_inputs([item], (".tar",))
        except FileNotFoundError:
            tars = []
        out += tars or [item]
    return out


def main(argv: Optional[list[str]] = None) -> dict:
    p = base_parser(__doc__)
    p.add_argument("--input", nargs="+", required=True,
                   help="img2dataset .tar shards or parquet files: paths, folders, globs or {a..b} brace patterns "
                        "(local or s3://)")
    args = p.parse_args(argv)
    return run_cli("convert.laion_to_mds", args, _prefer_tars(args.input), {})


if __name__ == "__main__":
    main()
