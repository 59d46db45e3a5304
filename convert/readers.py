"""Reading inputs: the input files that patterns name, and the records inside them (WebDataset tar groups,
JSON lines of .jsonl/.jsonl.zip files), with unsafe archive member names and broken archives flagged."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import tarfile
import zlib
from typing import Any, Callable, Iterable, Iterator, Optional

from braceexpand import braceexpand

from convert.report import UnitStats
from convert.storage import is_remote, local_path, s3_list
from convert.validate import Reject

MAX_MEMBER_BYTES = 1 << 28  # an archive member larger than this is not read into memory
# img2dataset writes these next to each <shard>.tar: metadata, not inputs.
_SIDE_FILE_SUFFIXES = ("_stats.json",)
_GLOB_CHARS = re.compile(r"[*?\[]")


def expand_inputs(patterns: Iterable[str], suffixes: tuple[str, ...]) -> list[str]:
    """Input files from paths, directories (recursive), globs and brace patterns, local or s3://.

    Only names ending in `suffixes` count, never img2dataset's side files (`<shard>_stats.json`, and the
    `<shard>.parquet` of a `<shard>.tar` also matched). Order: patterns as given, each one's matches sorted;
    duplicates removed. Raises FileNotFoundError with a one-line message for a pattern that matches nothing.
    """
    out: list[str] = []
    for pattern in patterns:
        for item in braceexpand(pattern):
            matches = [m for m in _expand_one(item, suffixes)
                       if m.endswith(suffixes) and not m.endswith(_SIDE_FILE_SUFFIXES)]
            if not matches:
                raise FileNotFoundError(f"no input files match {item!r} (looked for {', '.join(suffixes)})")
            out += matches
    tars = {u[: -len(".tar")] for u in out if u.endswith(".tar")}
    # img2dataset's <shard>.parquet next to <shard>.tar holds that shard's metadata, not more samples
    return [u for u in dict.fromkeys(out) if not (u.endswith(".parquet") and u[: -len(".parquet")] in tars)]


def _expand_one(item: str, suffixes: tuple[str, ...]) -> list[str]:
    if is_remote(item):
        glob_at = _GLOB_CHARS.search(item)
        if glob_at:
            listing = s3_list(item[:glob_at.start()])
            return sorted(u for u in listing if fnmatch.fnmatchcase(u, item))
        if item.endswith(suffixes):
            return [item]
        return sorted(u for u in s3_list(item.rstrip("/") + "/") if u.endswith(suffixes))
    item = local_path(item)
    if _GLOB_CHARS.search(item):
        return sorted(os.path.abspath(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
    if os.path.isdir(item):
        found = []
        for root, dirs, files in os.walk(item):
            dirs.sort()
            found += [os.path.join(root, f) for f in files if f.endswith(suffixes)]
        return sorted(os.path.abspath(p) for p in found)
    return [os.path.abspath(item)] if os.path.isfile(item) else []


def tar_groups(path: str) -> Iterator[tuple[str, dict[str, bytes], Optional[str]]]:
    """Stream a WebDataset tar as (key, {extension: bytes}, problem) groups without touching the filesystem.

    The key is the member path up to the first dot of its basename (WebDataset's rule); a repeated extension
    starts a new group with the same key (the caller rejects it as a duplicate). A member over
    MAX_MEMBER_BYTES flags its group "member_too_large" unread. A broken archive ends with
    its last group flagged "input_truncated" (it may be incomplete) and a ("", {}, reason) entry.
    """
    try:
        tf = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError, EOFError):
        yield "", {}, "input_unreadable"
        return
    key, group, problem = None, {}, None
    try:
        with tf:
            for member in tf:
                if not member.isfile():
                    continue
                dirname, base = os.path.split(member.name)
                stem, _, ext = base.partition(".")
                if not stem or not ext:
                    continue  # not a sample member (no extension; dot-files such as macOS "._x.jpg")
                member_key = f"{dirname}/{stem}" if dirname else stem
                ext = ext.lower()
                if member_key != key or ext in group:
                    if key is not None:
                        yield key, group, problem
                    key, group, problem = member_key, {}, None
                if _escapes(member.name):  # its name is only ever shown in the report
                    problem = "path_traversal_name"
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    problem = "member_too_large"
                    continue
                f = tf.extractfile(member)
                group[ext] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        if key is not None:
            yield key, group, "input_truncated"
        yield "", {}, "input_truncated"
        return
    if key is not None:
        yield key, group, problem


def _escapes(name: str) -> bool:
    """An archive member name that is absolute or climbs out of the archive (`../x.jpg`, `/abs/x.jpg`)."""
    return name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name) or re.match(r"^[A-Za-z]:", name) is not None


def parse_json(raw: bytes) -> tuple[Any, Optional[str]]:
    """(object, None), or (None, problem): "bad_utf8_text" for bytes that are not UTF-8, else "json_malformed"."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "bad_utf8_text"
    try:
        return json.loads(text), None
    except (json.JSONDecodeError, RecursionError):
        return None, "json_malformed"


def iter_json_lines(path: str) -> Iterator[tuple[int, Any, Optional[str]]]:
    """(line number, parsed object, problem) for a .jsonl or .jsonl.zip file (every member of the zip, in name
    order, numbered on). Blank lines are skipped; a malformed one comes back with problem "json_malformed",
    a broken archive with (n, None, "input_truncated"/"input_unreadable")."""
    import zipfile

    n = 0

    def parse(f: Any) -> Iterator[tuple[int, Any, Optional[str]]]:
        nonlocal n
        for raw in f:
            n += 1
            if not raw.strip():
                continue
            yield n - 1, *parse_json(raw)

    if not path.endswith(".zip"):
        with open(path, "rb") as f:
            yield from parse(f)
        return
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        yield 0, None, "input_unreadable"
        return
    with zf:
        for name in sorted(zf.namelist()):
            if name.endswith("/"):
                continue
            try:
                with zf.open(name) as f:
                    yield from parse(f)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
                yield n, None, "input_truncated"


def guarded(records: Iterable[tuple[Optional[str], Any, Optional[str]]], stats: UnitStats,
            build: Callable[[str, Any], dict]) -> Iterator[dict]:
    """The per-record bookkeeping the readers share. `records` yields (key, record, problem): no key is an
    input error (counted, nothing read); otherwise the record counts as read and `build(key, record)` makes
    the sample, unless it carries a problem or raises `Reject`, either of which is counted by reason."""
    for key, record, problem in records:
        if not key:
            stats.input_errors[problem] += 1
            continue
        stats.records_read += 1
        try:
            if problem:
                raise Reject(problem)
            yield build(key, record)
        except Reject as r:
            stats.reject(r.reason, key, r.detail)
