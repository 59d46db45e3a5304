"""Convert img2dataset output (WebDataset .tar shards or parquet with image bytes) to the `pairs` MDS schema.

    flamingo-convert-laion --input /data/laion/{00000..00099}.tar --output s3://bucket/laion-mds

Images keep their original bytes (validated by a full decode); captions are stripped UTF-8.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterator, Optional

from convert.cli import base_parser, console_script, run_cli
from convert.driver import convert
from convert.readers import guarded, parse_json, tar_groups
from convert.report import UnitStats
from convert.schema import PAIRS_COLUMNS
from convert.storage import read_bytes
from convert.units import Spec
from convert.validate import Reject, check_text, decode_utf8_text, finite_or_none, validate_image

# Member extensions / parquet columns that hold the image: every raster format validate_image decodes, so a
# GIF is kept alike from a tar and from a parquet column.
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")


def _similarity(meta: dict) -> float:
    value = finite_or_none(meta.get("similarity"))
    return math.nan if value is None else value


def _pair(key: str, image: Optional[bytes], caption: str, meta: dict, options: dict) -> dict:
    info = validate_image(image, options["max_image_pixels"])
    url = meta.get("url")
    return {"key": key, "image": image, "caption": caption, "url": url if isinstance(url, str) else "",
            "width": info.width, "height": info.height, "similarity": _similarity(meta)}


def _read_tar(path: str, url: str, stats: UnitStats, options: dict) -> Iterator[dict]:
    def build(key: str, group: dict) -> dict:
        image = next((group[e] for e in IMAGE_EXTS if e in group), None)
        meta: Any = {}
        if "json" in group:
            meta, problem = parse_json(group["json"])
            if problem:
                raise Reject(problem)
            if not isinstance(meta, dict):
                raise Reject("json_malformed", "metadata is not an object")
        if "txt" in group or "caption" not in meta:
            caption = decode_utf8_text(group.get("txt"), "caption")
        else:  # no .txt member: img2dataset also records the caption in the metadata
            caption = check_text(meta["caption"], "caption")
        return _pair(key, image, caption, meta, options)

    groups = []  # keys of the groups read, to check against img2dataset's own record of the shard

    def counted(records):
        for record in records:
            if record[0]:
                groups.append(record[0])
            yield record

    yield from guarded(counted(tar_groups(path)), stats, build)
    missing = missing_vs_img2dataset(url, groups)
    if missing:
        stats.input_errors["records_missing_vs_img2dataset_stats"] += missing


def missing_vs_img2dataset(tar_url: str, keys: list[str]) -> int:
    """How many records img2dataset says it wrote into this shard that it lacks: its sidecar parquet's keys
    with status "success", else `<shard>_stats.json`'s "successes" (a tar cut at a member boundary reads as
    a shorter valid tar). 0 when neither file is there."""
    stem = tar_url[: -len(".tar")]
    sidecar = read_bytes(stem + ".parquet")
    if sidecar is not None:
        import io

        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(sidecar), columns=["key", "status"]).to_pylist()
            return len({r["key"] for r in table if r["status"] == "success"} - set(keys))
        except Exception:  # not img2dataset's sidecar (other columns): fall back to the stats file
            pass
    stats = read_bytes(stem + "_stats.json")
    if stats is None:
        return 0
    successes, _ = parse_json(stats)
    expected = successes.get("successes") if isinstance(successes, dict) else None
    return max(0, expected - len(keys)) if isinstance(expected, int) else 0


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
    return _read_tar(path, url, stats, options)


SPEC = Spec(name="laion", columns=PAIRS_COLUMNS, suffixes=(".tar", ".parquet"), read=read)


def convert_laion(inputs: list[str], output: str, **kwargs: Any) -> dict:
    """Python API: see `convert.driver.convert` for the keyword arguments; returns the report."""
    return convert("convert.laion_to_mds", inputs, output, **kwargs)


def main(argv: Optional[list[str]] = None) -> dict:
    p = base_parser(__doc__, "img2dataset .tar shards or parquet files")
    args = p.parse_args(argv)
    return run_cli("convert.laion_to_mds", args, args.input, {})


cli = console_script(main)  # `flamingo-convert-laion`


if __name__ == "__main__":
    sys.exit(cli())
