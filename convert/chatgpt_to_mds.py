"""Convert OpenFlamingo's ChatGPT-generated interleaved sequences to the `interleaved` MDS schema (kind=fixed).

    flamingo-convert-chatgpt --input /data/gpt_interleaved/*.jsonl --output /data/mds/chatgpt

A sequence is a JSON object {"is_gpt": ..., "example": "... _!_IMAGE1_!_ ...", "image_map":
{"_!_IMAGE1_!_": {"base64_image": "..."}}} in a .json file (one object or a list), a .jsonl file or a
WebDataset .tar (`<key>.json` members). `texts` are the segments between placeholders; image k is placed
before the segment that follows its placeholder. A sequence whose placeholders cannot all be resolved to a
usable image is rejected (`missing_image_in_sample`, or the image's own reason): its text speaks of them all.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterator, Optional

from convert.cli import base_parser, console_script, run_cli
from convert.driver import convert
from convert.readers import guarded, iter_json_lines, parse_json, tar_groups
from convert.report import UnitStats
from convert.schema import INTERLEAVED_COLUMNS, fixed_sample
from convert.units import Spec
from convert.validate import Reject, decode_base64_image

PLACEHOLDER = re.compile(r"_!_IMAGE\d+_!_")


def chatgpt_document(doc: Any, key: str, options: dict, stats: UnitStats) -> dict:
    if not isinstance(doc, dict):
        raise Reject("json_malformed", "sequence is not an object")
    text = doc.get("example")
    if not isinstance(text, str):
        raise Reject("text_missing")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject("text_not_utf8") from None
    if not text.strip():
        raise Reject("text_empty")
    image_map = doc.get("image_map")
    if not isinstance(image_map, dict):
        raise Reject("image_map_invalid")
    names = PLACEHOLDER.findall(text)
    segments = PLACEHOLDER.split(text)
    def load(name):
        entry = image_map.get(name)
        if not isinstance(entry, dict) or not entry.get("base64_image"):
            raise Reject("missing_image_in_sample", name)  # a placeholder with no image behind it
        raw_url = entry.get("url") or entry.get("raw_url")
        return decode_base64_image(entry.get("base64_image")), {
            "image_name": name, "raw_url": raw_url if isinstance(raw_url, str) else ""}

    own_key, url = doc.get("key"), doc.get("url")
    # The text is written about its images: a sequence that cannot keep them all is rejected whole.
    return fixed_sample(own_key if isinstance(own_key, str) and own_key else key,
                        url if isinstance(url, str) else "", segments, names, load, options, stats, all_images=True)


def _documents(path: str, url: str, stats: UnitStats) -> Iterator[tuple[Optional[str], Any, Optional[str]]]:
    """(key, parsed object or None, problem) for every sequence of one input file; key None for a problem of
    the file itself."""
    stem = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
    if url.endswith(".tar"):
        for key, group, problem in tar_groups(path):
            if not key:
                stats.input_errors[problem] += 1
            elif problem or "json" not in group:
                yield key, None, problem or "json_missing"
            else:
                yield key, *parse_json(group["json"])
    elif url.endswith(".jsonl"):
        for line, doc, problem in iter_json_lines(path):
            yield (None if problem in ("input_truncated", "input_unreadable") else f"{stem}/{line}"), doc, problem
    else:
        with open(path, "rb") as f:
            obj, problem = parse_json(f.read())
        if problem:
            stats.input_errors[problem] += 1
            return
        for i, doc in enumerate(obj if isinstance(obj, list) else [obj]):
            yield f"{stem}/{i}", doc, None


def read(path: str, url: str, options: dict, stats: UnitStats) -> Iterator[dict]:
    return guarded(_documents(path, url, stats), stats, lambda key, doc: chatgpt_document(doc, key, options, stats))


SPEC = Spec(name="chatgpt", columns=INTERLEAVED_COLUMNS, suffixes=(".json", ".jsonl", ".tar"), read=read)


def convert_chatgpt(inputs: list[str], output: str, **kwargs: Any) -> dict:
    """Python API: see `convert.driver.convert` for the keyword arguments; returns the report."""
    return convert("convert.chatgpt_to_mds", inputs, output, **kwargs)


def main(argv: Optional[list[str]] = None) -> dict:
    p = base_parser(__doc__, ".json/.jsonl files or .tar shards of ChatGPT sequences")
    args = p.parse_args(argv)
    return run_cli("convert.chatgpt_to_mds", args, args.input, {})


cli = console_script(main)  # `flamingo-convert-chatgpt`


if __name__ == "__main__":
    sys.exit(cli())
