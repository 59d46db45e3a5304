"""Reading a task's files: the result type with its skip counts, and one-line errors for malformed files.

Bad inputs never crash a run midway: a file that cannot be read as its format says raises `ValueError` naming
the file and the problem before any example is returned; an example that cannot be used (its image is missing,
its question has no annotation) is skipped and counted by reason. The reference does neither: it fails on the
first bad example, inside the evaluation loop.
"""

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Example = TypeVar("Example")

MISSING_IMAGE = "missing_image"


@dataclass
class Loaded(Generic[Example]):
    """The usable examples of a task split, and how many were skipped for each reason."""

    examples: list[Example]
    skipped: dict[str, int] = field(default_factory=dict)


def keep_with_images(candidates: Iterable[Example], skipped_before: Mapping[str, int] | None = None
                     ) -> Loaded[Example]:
    """The candidates whose `image_path` file exists; the others are counted as `missing_image`, after the
    counts of the skips that happened before (`skipped_before`)."""
    examples, skipped = [], Counter(skipped_before or {})
    for candidate in candidates:
        if os.path.isfile(candidate.image_path):
            examples.append(candidate)
        else:
            skipped[MISSING_IMAGE] += 1
    return Loaded(examples, dict(skipped))


def check_name(kind: str, name: str, known: Iterable[str]) -> None:
    """A ValueError listing the known names when `name` is not one of them."""
    known = sorted(known)
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(known)}")


def read_json_list(path: str, key: str, record_keys: Iterable[str]) -> list[dict[str, Any]]:
    """The records under `key` of a JSON object file, each checked to have `record_keys`."""
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise ValueError(f"{path}: expected a JSON object with a list under {key!r}")
    for i, record in enumerate(document[key]):
        require(path, f"{key}[{i}]", record, record_keys)
    return document[key]


def read_jsonl(path: str, record_keys: Iterable[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines ignored), each checked to have `record_keys`."""
    records = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not JSON ({error})") from None
        require(path, f"line {number}", item, record_keys)
        records.append(item)
    return records


def require(path: str, where: str, record: Mapping[str, Any], keys: Iterable[str]) -> None:
    """A ValueError naming the file, the record and the keys it lacks (or that it is no JSON object)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{path}: {where} is not a JSON object")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{path}: {where} lacks {', '.join(map(repr, missing))}")


def field_of_each(path: str, where: str, records: Any, key: str) -> list[Any]:
    """`record[key]` of each record of the JSON list `records` (located by `where` in errors)."""
    if not isinstance(records, list):
        raise ValueError(f"{path}: {where} is not a list")
    for j, record in enumerate(records):
        require(path, f"{where}[{j}]", record, (key,))
    return [record[key] for record in records]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None

