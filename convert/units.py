"""Units of work, one per input file: each is converted by one process into a staging folder, then published
under parts/<unit id>/ with its `_unit.json` marker (what a rerun resumes from); and the worker pool."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import sys
import traceback
from typing import Any, Callable, Iterator, Optional

from convert.report import UnitStats
from convert.storage import INDEX, MARKER, Output, input_version, local_copy

_PROGRESS_EVERY = 64


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a converter script contributes: its schema, its input types and a record reader.

    `read(path, url, options, stats)` yields MDS sample dicts (each with a "key") for one input file, calling
    `stats.reject(reason, key, detail)` for every record it drops and incrementing `stats.records_read` per
    record.
    """
    name: str
    columns: dict[str, str]
    suffixes: tuple[str, ...]
    read: Callable[[str, str, dict, UnitStats], Iterator[dict]]


@dataclasses.dataclass(frozen=True)
class Job:
    """The settings that every unit of one conversion shares; sent to the worker processes."""
    spec_module: str          # "module" defining SPEC, or "module:ATTR"; importable in worker processes
    output: str
    staging: str
    shard_size: int
    compression: Optional[str]
    options: dict


def unit_id(url: str) -> str:
    """Stable, filesystem-safe id of an input file: its sanitized basename plus a hash of the full URL."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1])[:80]
    return f"{base}-{hashlib.sha1(url.encode()).hexdigest()[:10]}"


def fingerprint(job: Job, cap: Optional[int], exclude: set[str]) -> str:
    """Equal for two conversions of one input that write the same unit: a published unit with it is reused."""
    blob = json.dumps([job.spec_module, job.shard_size, job.compression, job.options, cap, sorted(exclude)],
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def load_spec(name: str) -> Spec:
    """"package.module" (its SPEC) or "package.module:ATTR"."""
    import importlib
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr or "SPEC")


def convert_unit(job: Job, url: str, cap: Optional[int], exclude: set[str],
                 progress: Callable[[int], None]) -> dict:
    """Convert one input file into a published unit and return its marker."""
    from streaming import MDSWriter

    spec = load_spec(job.spec_module)
    unit = unit_id(url)
    staged = os.path.join(job.staging, f".{unit}.tmp")
    if os.path.exists(staged):
        shutil.rmtree(staged)
    version = input_version(url)
    stats = UnitStats()
    keys: list[str] = []
    seen: set[str] = set()
    pending = 0
    with local_copy(url) as path, MDSWriter(out=staged, columns=spec.columns, size_limit=job.shard_size,
                                            compression=job.compression) as writer:
        for sample in spec.read(path, url, job.options, stats):
            key = sample["key"]
            if key in seen or key in exclude:
                stats.reject("duplicate_key", key)
                continue
            seen.add(key)
            writer.write(sample)
            keys.append(key)
            stats.written += 1
            stats.images_written += len(sample["image_sizes"]) if "image_sizes" in sample else 1
            pending += 1
            if pending >= _PROGRESS_EVERY:
                progress(pending)
                pending = 0
            if cap is not None and stats.written >= cap:
                break
    progress(pending)
    with open(os.path.join(staged, INDEX)) as f:
        index = json.load(f)
    marker = {
        "unit": unit, "converter": spec.name, "input": url, "input_version": version,
        "fingerprint": fingerprint(job, cap, exclude), "cap": cap, "excluded": sorted(exclude),
        "records_read": stats.records_read, "written": stats.written, "images_written": stats.images_written,
        "rejected": dict(stats.rejected), "images_dropped": dict(stats.images_dropped),
        "input_errors": dict(stats.input_errors), "reject_examples": stats.examples, "keys": keys, "index": index,
        "bytes": sum(s["raw_data"]["bytes"] for s in index["shards"]),
    }
    with open(os.path.join(staged, MARKER), "w") as f:
        json.dump(marker, f)
        f.flush()
        os.fsync(f.fileno())
    Output(job.output).publish(staged, unit)
    return marker


def run_parallel(job: Job, todo: list[str], workers: int, bar: Any) -> Iterator[dict]:
    """Convert the inputs `todo` in `workers` processes, one unit each at a time; yields each published unit's
    marker (in the order they finish)."""
    if not todo:
        return
    if workers <= 1:
        for url in todo:
            marker = convert_unit(job, url, None, set(), bar.update)
            log_unit(bar, marker)
            yield marker
        return
    ctx = mp.get_context("fork")
    tasks, results = ctx.Queue(), ctx.Queue()
    for url in todo:
        tasks.put(url)
    procs = [ctx.Process(target=_worker, args=(job, tasks, results), daemon=True)
             for _ in range(min(workers, len(todo)))]
    for p in procs:
        tasks.put(None)
        p.start()
    left = len(todo)
    try:
        while left:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    raise RuntimeError("all conversion workers died; rerun to resume") from None
                continue
            if kind == "progress":
                bar.update(payload)
            elif kind == "done":
                left -= 1
                log_unit(bar, payload)
                yield payload
            elif kind == "invalid":
                raise ValueError(payload)
            else:
                raise RuntimeError(f"conversion of {payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _worker(job: Job, tasks: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    while True:
        url = tasks.get()
        if url is None:
            return
        try:
            marker = convert_unit(job, url, None, set(), lambda n: results.put(("progress", n)))
            results.put(("done", marker))
        except (ValueError, FileNotFoundError) as e:  # the input's or the setup's fault: one line
            results.put(("invalid", str(e)))
        except Exception:
            results.put(("error", f"{url}: {traceback.format_exc()}"))


def log_unit(bar: Any, marker: dict) -> None:
    bar.write(f"convert: unit done {marker['unit']} ({marker['written']} samples, "
              f"{sum(marker['rejected'].values())} rejected)", file=sys.stderr)
