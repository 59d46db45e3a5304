"""A checkpoint's manifest: the sizes and SHA-256 of its files plus what the run looked like when it was
written (step, world size, data signature, config hash), stored beside it as `<name>.manifest.json`.

A checkpoint without a manifest is one whose save never finished; one whose files disagree with its manifest
was damaged after it was written. Either way it is not resumed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1
# Composer's default names: `ep{epoch}-ba{batch}-rank{rank}.pt` files, `ep{epoch}-ba{batch}` sharded folders.
_NAME = re.compile(r"^ep\d+-ba(\d+)(-rank0\.pt)?$")


def checkpoint_batch(name: str) -> Optional[int]:
    """The step of checkpoint `name` (a file or sharded folder name), None for anything else."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def manifest_name(name: str) -> str:
    return name + MANIFEST_SUFFIX


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checkpoint_files(path: str) -> dict[str, str]:
    """{name relative to the checkpoint's folder: local path} of a checkpoint file or sharded folder."""
    if os.path.isfile(path):
        return {os.path.basename(path): path}
    base = os.path.basename(path.rstrip("/"))
    return {f"{base}/{f}": os.path.join(path, f) for f in sorted(os.listdir(path))
            if os.path.isfile(os.path.join(path, f))}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomic(obj: Any, path: str) -> None:
    """Write, flush to disk, then rename: a reader sees the whole file or none."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Verdict:
    ok: bool
    reason: str = ""


def verify(path: str, manifest_path: str) -> Verdict:
    """Check a local checkpoint (file or sharded folder) against its manifest file."""
    if not os.path.exists(manifest_path):
        return Verdict(False, "no manifest (its save never finished)")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        expected = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Verdict(False, f"unreadable manifest ({type(e).__name__})")
    if not os.path.exists(path):
        return Verdict(False, "file missing")
    found = checkpoint_files(path)
    if set(found) != set(expected):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        return Verdict(False, f"files differ from the manifest (missing {missing}, unexpected {extra})")
    for rel, local in found.items():
        size = os.path.getsize(local)
        if size != expected[rel]["size"]:
            return Verdict(False, f"{rel} is {size} bytes, the manifest says {expected[rel]['size']} (truncated?)")
        if sha256_file(local) != expected[rel]["sha256"]:
            return Verdict(False, f"{rel} fails its SHA-256 check (changed after it was written)")
    return Verdict(True)


def read_manifest(manifest_path: str) -> dict[str, Any]:
    with open(manifest_path) as f:
        return json.load(f)
