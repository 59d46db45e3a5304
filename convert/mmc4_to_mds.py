r"""Convert MMC4 document shards (+ downloaded images) or OpenFlamingo's MMC4 WebDataset tars to the
`interleaved` MDS schema (kind=mmc4).

    flamingo-convert-mmc4 --input '/data/mmc4/docs_shard_{0..23098}_v2.jsonl.zip' \
        --image-dir /data/mmc4/images --output s3://bucket/mmc4-mds

Each kept image keeps its original bytes; its row of the similarity matrix is kept with it, so the stored
matrix is [kept images][sentences]. Documents with no usable image are rejected.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Iterator, Optional

from convert.cli import base_parser, console_script, run_cli
from convert.driver import convert
from convert.readers import guarded, iter_json_lines, parse_json, tar_groups
from convert.report import UnitStats
from convert.schema import INTERLEAVED_COLUMNS, interleaved_sample
from convert.units import Spec
from convert.validate import Reject, decode_base64_image, finite_or_none, validate_image

# A unit with this share of its referenced images missing from --image-dir is a setup error, not data loss.
MISSING_IMAGES_ERROR = 0.9

LAYOUTS = ("auto", "flat", "sharded")


def shard_index(url: str) -> Optional[str]:
    """MMC4 shard number from a file name such as docs_no_face_shard_17_v2.jsonl.zip -> "17"."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    m = re.search(r"shard_(\d+)", name) or re.search(r"(\d+)", name)
    return str(int(m.group(1))) if m else None


def safe_image_name(name: Any) -> str:
    """An image_name from the (untrusted) document, usable as one path component and nothing more."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise Reject("image_name_invalid")
    return name


class FolderImages:
    """Reads image_info[i]["image_name"] from `image_dir` (flat) or `image_dir/<shard index>/` (sharded), and
    counts what it was asked for and could not find."""

    def __init__(self, image_dir: str, layout: str, shard: Optional[str]):
        self.image_dir, self.layout, self.shard = image_dir, layout, shard
        self.asked = self.missing = 0
        self.first_missing: Optional[str] = None

    def __call__(self, info: dict) -> bytes:
        name = safe_image_name(info.get("image_name"))
        candidates = []
        if self.layout in ("auto", "sharded") and self.shard is not None:
            candidates.append(os.path.join(self.image_dir, self.shard, name))
        if self.layout in ("auto", "flat"):
            candidates.append(os.path.join(self.image_dir, name))
        self.asked += 1
        for path in candidates:
            if os.path.isfile(path):
                try:
                    with open(path, "rb") as f:
                        return f.read()
                except OSError as e:
                    raise Reject("image_unreadable", f"{path}: {e.strerror}") from None
        self.missing += 1
        self.first_missing = self.first_missing or candidates[0]
        raise Reject("image_missing")

    def check(self, url: str) -> None:
        """Stop when (nearly) every image of a unit is missing: a wrong --image-dir / --image-layout."""
        if self.asked and self.missing >= MISSING_IMAGES_ERROR * self.asked:
            raise ValueError(f"{url}: {self.missing} of {self.asked} images are missing under {self.image_dir} "
                             f"(first: {self.first_missing}); check --image-dir and --image-layout, or pass "
                             "--allow-missing-images if they are expected to be missing")


def base64_image_source(info: dict) -> bytes:
    return decode_base64_image(info.get("image_base64"))


def _check_texts(texts: Any) -> list[str]:
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise Reject("text_list_invalid")
    if not texts:
        raise Reject("text_list_empty")
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject("bad_utf8_text") from None
    return texts


def _check_similarity(sim: Any, n_images: int, n_texts: int) -> list[list[float]]:
    if (not isinstance(sim, list) or len(sim) != n_images
            or any(not isinstance(row, list) or len(row) != n_texts for row in sim)):
        raise Reject("similarity_shape_mismatch")
    for row in sim:
        for x in row:
            if finite_or_none(x) is None:
                raise Reject("similarity_invalid")
    return sim


def mmc4_document(doc: Any, key: str, load_image: Callable[[dict], bytes], options: dict,
                  stats: UnitStats) -> dict:
    """One MMC4 document -> an interleaved sample; image-level problems drop the image (counted)."""
    if not isinstance(doc, dict):
        raise Reject("json_malformed", "document is not an object")
    if "is_gpt" in doc:
        raise Reject("chatgpt_document", "use convert/chatgpt_to_mds.py")
    texts = _check_texts(doc.get("text_list"))
    infos = doc.get("image_info")
    if not isinstance(infos, list):
        raise Reject("image_info_invalid")
    sim = _check_similarity(doc.get("similarity_matrix"), len(infos), len(texts))
    kept, rows = [], []
    for info, row in zip(infos, sim):
        try:
            if not isinstance(info, dict):
                raise Reject("image_meta_invalid")
            matched = info.get("matched_text_index")
            if matched is None:
                matched = max(range(len(texts)), key=row.__getitem__)
            if isinstance(matched, bool) or not isinstance(matched, int) or not 0 <= matched < len(texts):
                raise Reject("image_meta_invalid")
            data = load_image(info)
            image = validate_image(data, options["max_image_pixels"])
            meta = {"matched_text_index": matched, "matched_sim": finite_or_none(info.get("matched_sim")),
                    "image_name": info.get("image_name") if isinstance(info.get("image_name"), str) else "",
                    "raw_url": info.get("raw_url") if isinstance(info.get("raw_url"), str) else ""}
            kept.append((data, image, meta))
            rows.append([float(x) for x in row])
        except Reject as r:
            stats.drop_image(r.reason)
    if not kept:
        raise Reject("no_usable_image")
    url = doc.get("url")
    return interleaved_sample(key, "mmc4", url if isinstance(url, str) else "", texts, kept, rows)


def _tar_document(key: str, group: dict, options: dict, stats: UnitStats) -> dict:
    if "json" not in group:
        raise Reject("json_missing")
    doc, problem = parse_json(group["json"])
    if problem:
        raise Reject(problem)
    return mmc4_document(doc, key, base64_image_source, options, stats)


def read(path: str, url: str, options: dict, stats: UnitStats) -> Iterator[dict]:
    if url.endswith(".tar"):
        yield from guarded(tar_groups(path), stats, lambda key, group: _tar_document(key, group, options, stats))
        return
    if not options.get("image_dir"):
        raise ValueError("MMC4 .jsonl/.jsonl.zip input needs --image-dir (the downloaded images)")
    load = FolderImages(options["image_dir"], options.get("image_layout", "auto"), shard_index(url))
    stem = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
    lines = ((None if problem in ("input_truncated", "input_unreadable") else f"{stem}/{line}", doc, problem)
             for line, doc, problem in iter_json_lines(path))
    yield from guarded(lines, stats, lambda key, doc: mmc4_document(doc, key, load, options, stats))
    if not options.get("allow_missing_images"):
        load.check(url)


SPEC = Spec(name="mmc4", columns=INTERLEAVED_COLUMNS, suffixes=(".jsonl", ".jsonl.zip", ".zip", ".tar"), read=read)


def convert_mmc4(inputs: list[str], output: str, image_dir: Optional[str] = None, image_layout: str = "auto",
                 allow_missing_images: bool = False, **kwargs: Any) -> dict:
    """Python API: see `convert.driver.convert` for the other keyword arguments; returns the report."""
    options = {"image_dir": os.path.abspath(image_dir) if image_dir else None, "image_layout": image_layout,
               "allow_missing_images": allow_missing_images}
    return convert("convert.mmc4_to_mds", inputs, output, options=options, **kwargs)


def main(argv: Optional[list[str]] = None) -> dict:
    p = base_parser(__doc__, "MMC4 .jsonl/.jsonl.zip shards or OpenFlamingo MMC4 .tar shards")
    p.add_argument("--image-dir", default=None,
                   help="local folder of the downloaded MMC4 images (needed for .jsonl/.jsonl.zip input)")
    p.add_argument("--image-layout", choices=LAYOUTS, default="auto",
                   help="flat: <image-dir>/<image_name>; sharded: <image-dir>/<shard index>/<image_name>; "
                        "auto: sharded, then flat")
    p.add_argument("--allow-missing-images", action="store_true",
                   help=f"convert even when {MISSING_IMAGES_ERROR * 100:.0f}%% or more of a shard's images are missing "
                        "(each is still counted)")
    args = p.parse_args(argv)
    if args.image_dir and not os.path.isdir(args.image_dir):
        p.error(f"--image-dir {args.image_dir} is not a folder")
    options = {"image_dir": os.path.abspath(args.image_dir) if args.image_dir else None,
               "image_layout": args.image_layout, "allow_missing_images": args.allow_missing_images}
    return run_cli("convert.mmc4_to_mds", args, args.input, options)


cli = console_script(main)  # `flamingo-convert-mmc4`


if __name__ == "__main__":
    sys.exit(cli())
