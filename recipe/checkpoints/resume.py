"""Which checkpoint a run resumes from: the newest one in `save_folder` (local or object store) whose files
match its manifest. Checkpoints that fail are named in one line and moved aside to `rejected/` (never
deleted; on an object store, which cannot rename, a `rejected/<name>.reason.txt` marker excludes them)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Optional

from recipe.checkpoints.manifest import Verdict, checkpoint_batch, manifest_name, read_manifest, verify

REJECTED = "rejected"


class ResumeError(Exception):
    """The run cannot resume safely; the message is one line saying why and what to do."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    return {k: v for key, sub in d.items() for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else key).items()}


def signature_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key old -> new' for each leaf that differs between two run signatures."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k} {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


class _Local:
    def __init__(self, folder: str):
        self.folder = folder

    def names(self) -> list[str]:
        return os.listdir(self.folder) if os.path.isdir(self.folder) else []

    def fetch(self, name: str, workdir: str) -> str:
        return os.path.join(self.folder, name)

    def reject(self, name: str, reason: str) -> str:
        dest = os.path.join(self.folder, REJECTED)
        os.makedirs(dest, exist_ok=True)
        for n in (name, manifest_name(name)):
            if os.path.exists(os.path.join(self.folder, n)):
                target, i = os.path.join(dest, n), 1
                while os.path.exists(target):  # a name rejected before (an earlier attempt) keeps its copy
                    target, i = os.path.join(dest, f"{n}.{i}"), i + 1
                shutil.move(os.path.join(self.folder, n), target)
        return f"moved to {os.path.join(dest, name)}"

    def load_path(self, name: str) -> str:
        return os.path.join(self.folder, name)


class _Remote:
    def __init__(self, uri: str):
        from composer.utils import maybe_create_object_store_from_uri, parse_uri

        self.uri = uri.rstrip("/")
        self.store = maybe_create_object_store_from_uri(self.uri)
        self.prefix = parse_uri(self.uri)[2].strip("/")
        self.prefix = self.prefix + "/" if self.prefix else ""
        self.keys = [k[len(self.prefix):] for k in self.store.list_objects(self.prefix) if k.startswith(self.prefix)]

    def names(self) -> list[str]:
        rejected = {k[len(REJECTED) + 1:-len(".reason.txt")] for k in self.keys
                    if k.startswith(REJECTED + "/") and k.endswith(".reason.txt")}
        return [n for n in dict.fromkeys(k.split("/")[0] for k in self.keys) if n not in rejected]

    def fetch(self, name: str, workdir: str) -> str:
        """Download the checkpoint (file or sharded folder) and its manifest, when there is one."""
        for key in self.keys:
            if key == name or key.startswith(name + "/") or key == manifest_name(name):
                dest = os.path.join(workdir, key)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                self.store.download_object(self.prefix + key, dest, overwrite=True)
        return os.path.join(workdir, name)

    def reject(self, name: str, reason: str) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(reason + "\n")
        try:
            self.store.upload_object(f"{self.prefix}{REJECTED}/{name}.reason.txt", f.name)
        finally:
            os.remove(f.name)
        return f"marked rejected by {self.uri}/{REJECTED}/{name}.reason.txt"

    def load_path(self, name: str) -> str:
        return f"{self.uri}/{name}"


def find_resume_checkpoint(save_folder: str, *, signature: dict[str, Any], allow_data_change: bool,
                           before_batch: Optional[int] = None, log: Callable[[str], None] = print) -> Optional[str]:
    """The load path of the newest verified checkpoint in `save_folder` (formatted already), or None when the
    folder holds no finished checkpoint. `before_batch`: only checkpoints older than that step (a rollback).

    Raises ResumeError when finished checkpoints exist but none verifies, or when the newest verified one was
    written by a run with another global batch, sources or sequence shaping (unless `allow_data_change`)."""
    where = _Remote(save_folder) if "://" in save_folder else _Local(save_folder)
    names = sorted((n for n in where.names() if checkpoint_batch(n) is not None), key=checkpoint_batch, reverse=True)
    if before_batch is not None:
        names = [n for n in names if checkpoint_batch(n) < before_batch]
    failed = []
    with tempfile.TemporaryDirectory(prefix="resume-") as workdir:
        for name in names:
            local = where.fetch(name, workdir)
            manifest = os.path.join(os.path.dirname(local), manifest_name(name))
            verdict: Verdict = verify(local, manifest)
            if not verdict.ok:
                failed.append((name, verdict.reason, os.path.exists(manifest)))
                log(f"checkpoint {name}: {verdict.reason}; {where.reject(name, verdict.reason)}")
                continue
            changes = signature_changes(read_manifest(manifest).get("signature", {}), signature)
            if changes and not allow_data_change:
                raise ResumeError(
                    f"checkpoint {name} was written by a run with other data settings ({'; '.join(changes)}); "
                    f"resuming would not continue its data order — restore them, or set allow_data_change_on_resume=true")
            if changes:
                log(f"checkpoint {name}: resuming with changed data settings ({'; '.join(changes)}), as allowed")
            log(f"resuming from checkpoint {name} (verified against its manifest)")
            return where.load_path(name)
    finished = [(name, reason) for name, reason, had_manifest in failed if had_manifest]
    if finished:
        raise ResumeError(f"{save_folder}: none of its {len(finished)} finished checkpoint(s) verifies "
                          f"({finished[0][0]}: {finished[0][1]}); they were moved aside, not deleted — restore a "
                          f"good copy, or start over with autoresume=false")
    return None
