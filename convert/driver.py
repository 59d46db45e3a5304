"""`convert()`: input files to one MDS dataset root. Published units are reused, the others converted; keys
duplicated across units are resolved in input order; conversion_report.json, then index.json, are written last."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Iterable, Optional

from convert.readers import expand_inputs
from convert.report import REPORT, build_report, summary
from convert.storage import INDEX, MARKER, Output, input_version
from convert.units import Job, convert_unit, fingerprint, load_spec, log_unit, run_parallel, unit_id
from convert.validate import DEFAULT_MAX_IMAGE_PIXELS

DEFAULT_SHARD_SIZE = 1 << 26


def convert(spec_module: str, inputs: Iterable[str], output: str, *, workers: int = 1,
            shard_size: int | str = DEFAULT_SHARD_SIZE, max_samples: Optional[int] = None,
            compression: Optional[str] = None, staging_dir: Optional[str] = None,
            options: Optional[dict] = None, progress_bar: bool = True, dedup_across_inputs: bool = True,
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, existing: str = "refuse") -> dict:
    """Convert `inputs` into one MDS dataset at `output` and return the conversion report.

    spec_module: "convert.laion_to_mds" etc. (a module with SPEC, or "module:ATTR"); the scripts' convert_*
    functions fill it and `options` in. inputs: files, folders, globs, {a..b} patterns, local or s3://.
    output: local folder or s3:// prefix. workers: processes converting input files in parallel.
    shard_size: MDS size_limit (bytes or "64mb"). compression: MDS compression (None: images don't compress).
    staging_dir: scratch root for s3:// outputs. options: the converter's own settings.
    max_image_pixels: decompression-bomb limit of the image validation.
    existing: what to do with an output root that holds another conversion (another converter, or inputs
    this run does not name): "refuse" (ValueError), "overwrite" (its other parts are deleted) or "append"
    (its inputs come first, this run's are added; same converter only). Rerunning the same command resumes.

    Resumable: published units with matching settings are reused. With `max_samples`, units are converted
    in input order in this process, each capped at what is still missing, so the subset is deterministic.
    `dedup_across_inputs` keeps every key in memory (~100 bytes each): turn it off for billions of keys that are
    unique by construction (img2dataset keys are); duplicates inside one input are always rejected.
    """
    from streaming.base.util import bytes_to_int
    from tqdm import tqdm

    start = time.time()
    spec = load_spec(spec_module)
    options = {**(options or {}), "max_image_pixels": max_image_pixels}
    urls = expand_inputs(list(inputs), spec.suffixes)
    out = Output(output)
    urls = _settle_existing(out, spec.name, urls, existing)
    if out.remote:  # one scratch folder per output, so a rerun finds (and clears) a killed run's leftovers
        staging = os.path.join(staging_dir or tempfile.gettempdir(),
                               f"convert-staging-{hashlib.sha1(out.url.encode()).hexdigest()[:12]}")
    else:
        staging = os.path.join(out.url, "parts")
    if os.path.isdir(staging):  # leftovers of a killed run
        for d in os.listdir(staging):
            if d.startswith("."):
                shutil.rmtree(os.path.join(staging, d))
    os.makedirs(staging, exist_ok=True)
    # The run is changing the output: it must not look complete until the new index is written.
    out.remove(INDEX)
    out.remove(REPORT)
    job = Job(spec_module, output if out.remote else out.url, staging, bytes_to_int(shard_size), compression,
              options)
    done = out.done_units()
    markers: dict[str, dict] = {}
    for url in urls:
        unit = unit_id(url)
        if unit in done:
            marker = out.read_json(f"parts/{unit}/{MARKER}")
            if (marker is not None and marker.get("input") == url
                    and marker.get("input_version") == input_version(url)):
                markers[url] = _keep_keys(marker, dedup_across_inputs)
    reused = set(markers)
    bar = tqdm(desc=f"convert {spec.name}", unit=" samples", disable=not progress_bar, smoothing=0.1,
               dynamic_ncols=True, file=sys.stderr)
    if max_samples is None:
        todo = [u for u in urls if u not in markers
                or markers[u]["fingerprint"] != fingerprint(job, None, set(markers[u]["excluded"]))]
        for marker in run_parallel(job, todo, workers, bar):
            markers[marker["input"]] = _keep_keys(marker, dedup_across_inputs)
            reused.discard(marker["input"])

    # Finalize in input order: caps for --max-samples and cross-unit duplicate keys, first occurrence wins.
    included: list[dict] = []
    seen: set[str] = set()
    remaining = max_samples
    for url in urls:
        if remaining is not None and remaining <= 0:
            break
        exclude = seen.intersection(markers[url]["excluded"]) if url in markers else set()
        while True:
            marker = markers.get(url)
            if marker is None or marker["fingerprint"] != fingerprint(job, remaining, exclude):
                marker = convert_unit(job, url, remaining, exclude, bar.update)
                markers[url] = marker
                reused.discard(url)
                log_unit(bar, marker)
            dup = seen.intersection(marker.get("keys", ()))
            if not dup:
                break
            exclude |= dup
        if dedup_across_inputs:
            seen.update(marker["keys"])
        marker.pop("keys", None)  # held once, in `seen`
        included.append(marker)
        if remaining is not None:
            remaining -= marker["written"]
    bar.close()

    report = build_report(spec.name, spec.columns, out.url, urls, included, workers=workers,
                          shard_size=job.shard_size, max_samples=max_samples, options=job.options,
                          elapsed=time.time() - start, reused=len(reused))
    out.write_json(REPORT, report)
    shards = []
    for marker in included:
        for shard in marker["index"]["shards"]:
            shard = json.loads(json.dumps(shard))
            for k in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(k):
                    shard[k]["basename"] = f"parts/{marker['unit']}/{shard[k]['basename']}"
            shards.append(shard)
    out.write_json(INDEX, {"version": 2, "shards": shards})
    if out.remote:
        shutil.rmtree(staging, ignore_errors=True)
    print(summary(report), file=sys.stderr, flush=True)
    return report


def _settle_existing(out: Output, converter: str, urls: list[str], mode: str) -> list[str]:
    """The inputs to convert, given what the output root already holds (see `convert`'s `existing`). Markers
    hold every key of their unit, so only those of units this run does not name are read."""
    if mode not in ("refuse", "overwrite", "append"):
        raise ValueError(f"existing={mode!r}: use refuse, overwrite or append")
    done = out.done_units()
    if not done:
        return urls
    report = out.read_json(REPORT) or {}

    def marker(unit: str) -> dict:
        return out.read_json(f"parts/{unit}/{MARKER}") or {}

    before = report.get("converter") or marker(next(iter(done))).get("converter")
    other_converter = before is not None and before != converter
    foreign = sorted(done if other_converter else done - {unit_id(u) for u in urls})
    if not foreign:
        return urls  # this run's own units: resume
    if mode == "overwrite":
        for unit in foreign:
            out.remove_unit(unit)
        return urls
    if mode == "append" and not other_converter:
        earlier = report.get("inputs") or [m["input"] for m in map(marker, foreign) if "input" in m]
        return list(dict.fromkeys([*earlier, *urls]))
    what = f"a {before} conversion" if other_converter else f"{len(foreign)} input(s) this run does not name"
    raise ValueError(f"--output {out.url} already holds {what} (e.g. {marker(foreign[0]).get('input', foreign[0])});"
                     f" pass --overwrite to replace it{'' if other_converter else ', or --append to add these inputs to it'}")


def _keep_keys(marker: dict, keep: bool) -> dict:
    if not keep:
        marker.pop("keys", None)
    return marker
