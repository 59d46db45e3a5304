"""Remove the shared memory that crashed Streaming jobs of this recipe leave behind, without touching live jobs.

Streaming names its POSIX shared memory `/dev/shm/NNNNNN_<what>` (NNNNNN = a per-dataset prefix). A job killed
with its whole process group (OOM killer, scheduler, `kill -9`) leaves the segments behind. A later dataset over
the same `local` with a remote then fails with "Reused local directory" (or `FileExistsError`, streaming#781)
whenever the dead job's file locks are not in its temp dir (another container or TMPDIR, /tmp cleaned).

`streaming.base.util.clean_stale_shared_memory()` unlinks every prefix it finds, including a live co-located
job's. Which process maps a segment doesn't tell the owner either: every StreamingDataset construction attaches
to the segments of lower prefixes while looking for a free one and keeps them mapped. So the recipe records an
owner file per dataset it builds, `/dev/shm/flamingo-shm-owner.NNNNNN` (pid, process start time, pid namespace,
the dataset's local dirs, its temp dir), and `clean_stale_shared_memory` removes only prefixes whose recorded
owner is dead, in our pid namespace, and whose segments still name the recorded local dirs. Segments of other
programs are never touched.

A dead owner's Python resource tracker may still be running: a process killed alone (the OOM killer picks one)
leaves its tracker alive until its DataLoader workers notice and exit, and the tracker then unlinks every segment
its process created, by name. Cleaning that prefix earlier would let a new dataset take it, and the old tracker
would unlink the new dataset's segments (the new job then ends with resource_tracker "leaked shared_memory"
warnings, its segments gone). So the owner record also names the tracker, and a prefix stays untouched while it runs.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import tempfile
from multiprocessing import resource_tracker

SHM_ROOT = "/dev/shm"
_OWNER = "flamingo-shm-owner."


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a live pid from a reused one); None when it is
    gone or a zombie (a killed job's orphans may never be reaped in a container whose init doesn't reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def _locals_of(prefix: str) -> list[str] | None:
    """The local dirs a prefix's `locals` segment names (Streaming's packing: int32 size, '\\0'-joined dirs,
    then the prefix), or None when the segment is gone or unreadable."""
    try:
        with open(os.path.join(SHM_ROOT, f"{prefix}_locals"), "rb") as f:
            data = f.read()
        size = int.from_bytes(data[:4], "little")
        return data[4:size].decode().split("\0")[:-1]
    except (OSError, UnicodeDecodeError):
        return None


def register_owner(prefix_int: int, local_dirs: list[str]) -> str:
    """Record this process as the owner of a Streaming prefix (call from the local leader after building)."""
    prefix = f"{prefix_int:06}"
    path = os.path.join(SHM_ROOT, _OWNER + prefix)
    # Streaming created the segments through multiprocessing, which started this process's resource tracker;
    # Python offers no public accessor for its pid.
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    record = {"pid": os.getpid(), "start": _start_time(os.getpid()), "pidns": _pid_namespace(),
              "locals": list(local_dirs), "tempdir": tempfile.gettempdir(),
              "tracker": None if tracker is None else {"pid": tracker, "start": _start_time(tracker)}}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    atexit.register(_release, path, record)
    return path


def _release(path: str, record: dict) -> None:
    """At a normal exit Streaming removes its segments; drop our record too unless another owner replaced it."""
    try:
        with open(path) as f:
            if json.load(f) == record:
                os.unlink(path)
    except (OSError, ValueError):
        pass


def _running(pid: int, start: str | None) -> bool:
    now = _start_time(pid)
    return now is not None and now == start


def _owner_alive(record: dict) -> bool:
    """The owner runs, or its resource tracker does (it will unlink the owner's segments itself)."""
    if record.get("pidns") != _pid_namespace():
        return True  # can't judge a process in another pid namespace: leave it alone
    tracker = record.get("tracker")
    return _running(int(record["pid"]), record.get("start")) or (
        tracker is not None and _running(int(tracker["pid"]), tracker["start"]))


def clean_stale_shared_memory() -> list[str]:
    """Unlink the segments (and file locks) of recipe datasets whose owner process is dead; returns the
    removed paths. Safe while other jobs run on the host."""
    removed = []
    for owner in glob.glob(os.path.join(SHM_ROOT, _OWNER + "[0-9]*")):
        if owner.endswith(".tmp"):
            continue
        try:
            with open(owner) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if _owner_alive(record):
            continue
        prefix = owner.rsplit(".", 1)[1]
        if _taken_over(prefix, record, owner):
            _unlink(owner)  # another dataset now uses this prefix: only our record is stale
            continue
        paths = glob.glob(os.path.join(SHM_ROOT, f"{prefix}_*"))
        paths += glob.glob(os.path.join(record.get("tempdir", tempfile.gettempdir()), f"{prefix}_*filelock"))
        removed += [p for p in paths if _unlink(p)]
        _unlink(owner)
    return removed


def _taken_over(prefix: str, record: dict, owner: str) -> bool:
    """True when the prefix's current `locals` segment isn't the recorded owner's: it names other dirs, or it
    was created after the owner record was written (a new dataset with the same dirs took the prefix)."""
    current = _locals_of(prefix)
    if current is None:
        return False
    try:
        newer = os.stat(os.path.join(SHM_ROOT, f"{prefix}_locals")).st_mtime_ns > os.stat(owner).st_mtime_ns
    except OSError:
        return False
    return current != record["locals"] or newer


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:  # removed concurrently, or not ours
        return False
