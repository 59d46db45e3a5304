"""Convert your own data, one JSON object per line, to MDS.

Two line shapes, one per output (--kind):

    pairs:        {"image": "imgs/cat.jpg", "caption": "a cat", "key": "optional", "url": "optional",
                   "similarity": 0.3 (optional)}
    interleaved:  {"text": "Intro. <image>The cat sat. <image>Then it slept.", "images": ["a.jpg", "b.png"],
                   "key": "optional", "url": "optional"}

Image paths are relative to --image-root (default: the folder of the .jsonl file) and must stay inside it.
Interleaved lines become kind=fixed documents: `texts` is the text split at the `<image>` markers and image k
is placed before the segment that follows its marker; there must be exactly one marker per image.

    flamingo-convert-jsonl --kind pairs --input my_pairs.jsonl --output /data/mds/mine
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterator, Optional

from convert.cli import base_parser, console_script, run_cli
from convert.driver import convert
from convert.readers import iter_json_lines
from convert.report import UnitStats
from convert.schema import INTERLEAVED_COLUMNS, PAIRS_COLUMNS, fixed_sample
from convert.units import Spec
from convert.validate import Reject, check_text, finite_or_none, validate_image

IMAGE_MARKER = "<image>"


def _load(path: Any, root: str) -> bytes:
    if not isinstance(path, str) or not path or "\0" in path:
        raise Reject("image_path_invalid")
    full = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([full, os.path.realpath(root)]) != os.path.realpath(root):
        raise Reject("image_path_invalid", "outside --image-root")
    if not os.path.isfile(full):
        raise Reject("image_missing")
    with open(full, "rb") as f:
        return f.read()


def _str_or_empty(x: Any) -> str:
    return x if isinstance(x, str) else ""


def pair_line(obj: dict, key: str, root: str, options: dict) -> dict:
    caption = check_text(obj.get("caption"), "caption")
    data = _load(obj.get("image"), root)
    info = validate_image(data, options["max_image_pixels"])
    sim = finite_or_none(obj.get("similarity"))
    return {"key": key, "image": data, "caption": caption, "url": _str_or_empty(obj.get("url")),
            "width": info.width, "height": info.height, "similarity": math.nan if sim is None else sim}


def interleaved_line(obj: dict, key: str, root: str, options: dict, stats: UnitStats) -> dict:
    text = obj.get("text")
    check_text(text, "text")
    paths = obj.get("images")
    if not isinstance(paths, list):
        raise Reject("images_invalid")
    segments = text.split(IMAGE_MARKER)
    if len(segments) != len(paths) + 1:
        raise Reject("image_count_mismatch", f"{len(segments) - 1} markers, {len(paths)} images")
    return fixed_sample(key, _str_or_empty(obj.get("url")), segments, paths,
                        lambda path: (_load(path, root), {"image_name": path}), options, stats)


def read(path: str, url: str, options: dict, stats: UnitStats) -> Iterator[dict]:
    root = options.get("image_root") or os.path.dirname(os.path.abspath(path))
    if options.get("image_root") is None and "://" in url:
        raise ValueError("jsonl input from object storage needs --image-root (a local folder)")
    stem = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
    for line, obj, problem in iter_json_lines(path):
        stats.records_read += 1
        key = f"{stem}/{line}"
        try:
            if problem:
                raise Reject(problem)
            if not isinstance(obj, dict):
                raise Reject("json_malformed", "line is not an object")
            own = obj.get("key")
            key = own if isinstance(own, str) and own else key
            if options["kind"] == "pairs":
                yield pair_line(obj, key, root, options)
            else:
                yield interleaved_line(obj, key, root, options, stats)
        except Reject as r:
            stats.reject(r.reason, key, r.detail)


PAIRS_SPEC = Spec(name="jsonl-pairs", columns=PAIRS_COLUMNS, suffixes=(".jsonl",), read=read)
INTERLEAVED_SPEC = Spec(name="jsonl-interleaved", columns=INTERLEAVED_COLUMNS, suffixes=(".jsonl",), read=read)
SPECS = {"pairs": "convert.jsonl_to_mds:PAIRS_SPEC", "interleaved": "convert.jsonl_to_mds:INTERLEAVED_SPEC"}


def convert_jsonl(inputs: list[str], output: str, kind: str, image_root: Optional[str] = None,
                  **kwargs: Any) -> dict:
    """Python API: `kind` is "pairs" or "interleaved"; see `convert.driver.convert` for the other keyword
    arguments; returns the report."""
    options = {"kind": kind, "image_root": os.path.abspath(image_root) if image_root else None}
    return convert(SPECS[kind], inputs, output, options=options, **kwargs)


def main(argv: Optional[list[str]] = None) -> dict:
    p = base_parser(__doc__, ".jsonl files")
    p.add_argument("--kind", choices=sorted(SPECS), required=True, help="line shape, and so the output schema")
    p.add_argument("--image-root", default=None,
                   help="folder that image paths are relative to (default: each .jsonl file's folder)")
    args = p.parse_args(argv)
    options = {"kind": args.kind, "image_root": os.path.abspath(args.image_root) if args.image_root else None}
    return run_cli(SPECS[args.kind], args, args.input, options)


cli = console_script(main)  # `flamingo-convert-jsonl`


if __name__ == "__main__":
    sys.exit(cli())
