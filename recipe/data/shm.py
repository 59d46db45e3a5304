"""Remove the shared memory that crashed Streaming jobs leave behind, without touching live jobs.

Streaming names its POSIX shared memory `/dev/shm/NNNNNN_<what>` (NNNNNN = a per-dataset prefix) and
keeps it mapped while the dataset lives. A SIGKILLed job leaves the segments behind; a later dataset over
the same `local` then fails with "Reused local directory" or `FileExistsError` (streaming#781, #717).
`streaming.base.util.clean_stale_shared_memory()` unlinks every prefix it finds, including those of
another job running on the same host. Here a prefix counts as stale only when no process of ours maps any
of its segments (read from /proc/<pid>/maps); only segments we own are considered (other users' segments
can't be unlinked in /dev/shm anyway), and their leftover file locks go with them.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile

_SEGMENT = re.compile(r"/dev/shm/(\d{6})_\w+")


def _live_prefixes() -> set[str]:
    live = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                live.update(m.group(1) for m in _SEGMENT.finditer(f.read()))
        except OSError:  # the process exited, or isn't ours
            continue
    return live


def clean_stale_shared_memory() -> list[str]:
    """Unlink our Streaming shared-memory segments (and file locks) that no live process maps.

    Returns the removed paths. Safe to call while other Streaming jobs run on the host; call it before
    building datasets (a segment created between the scan and the unlink is not in the scan's list).
    """
    uid = os.getuid()
    candidates = [p for p in glob.glob("/dev/shm/[0-9][0-9][0-9][0-9][0-9][0-9]_*") if _owned(p, uid)]
    if not candidates:
        return []
    live = _live_prefixes()
    stale = {os.path.basename(p)[:6] for p in candidates} - live
    removed = []
    for path in candidates:
        if os.path.basename(path)[:6] in stale and _unlink(path):
            removed.append(path)
    for prefix in stale:
        for lock in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}_*filelock*")):
            if _owned(lock, uid) and _unlink(lock):
                removed.append(lock)
    return removed


def _owned(path: str, uid: int) -> bool:
    try:
        return os.stat(path).st_uid == uid
    except OSError:
        return False


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:  # removed concurrently, or not ours
        return False
