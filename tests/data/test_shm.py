"""Stale shared-memory cleanup and a job killed alone: its Python resource tracker outlives it and unlinks the
job's segments by name when it exits, so the prefix must not be handed to a new dataset before that."""

import glob
import json
import os
import subprocess
import sys
import time

from recipe.data.shm import clean_stale_shared_memory
from recipe.offline.mds import pair_row, write_pairs

# Builds a dataset over argv[1] (its owner record written as the recipe's loader writes it), forks a child that
# holds the resource tracker open for 4 s, as a DataLoader worker does until it notices its parent is gone, and
# SIGKILLs itself alone, as the OOM killer does.
KILLED_ALONE = """
import multiprocessing, os, signal, sys, time
from streaming import StreamingDataset
from recipe.data.shm import register_owner
ds = StreamingDataset(local=sys.argv[1], batch_size=1)
register_owner(ds._shm_prefix_int, [sys.argv[1]])
multiprocessing.get_context("fork").Process(target=time.sleep, args=(4,)).start()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_jobs_running_tracker_keeps_its_prefix(tmp_path):
    mds = write_pairs(str(tmp_path / "mds"), [pair_row(f"k{i}", b"jpeg", "a caption", 32, 32) for i in range(4)])
    log = tmp_path / "killed.log"
    with open(log, "w") as out:  # a file, not a pipe: waiting for a pipe's end would wait for the child too
        code = subprocess.run([sys.executable, "-c", KILLED_ALONE, mds], env=dict(os.environ, PYTHONPATH=os.getcwd()),
                              stdout=out, stderr=out, timeout=120).returncode
    assert code == -9, log.read_text()[-2000:]
    owners = [p for p in glob.glob("/dev/shm/flamingo-shm-owner.*[0-9]") if json.load(open(p))["locals"] == [mds]]
    assert len(owners) == 1
    prefix = owners[0].rsplit(".", 1)[1]
    segments = set(glob.glob(f"/dev/shm/{prefix}_*"))
    assert f"/dev/shm/{prefix}_locals" in segments

    # Owner dead, tracker running: nothing of the prefix is touched.
    assert not set(clean_stale_shared_memory()) & segments and os.path.exists(owners[0])
    assert segments <= set(glob.glob(f"/dev/shm/{prefix}_*"))

    # Once the child exits, the tracker unlinks the segments itself and ends; then a cleanup drops the record.
    deadline = time.time() + 60
    while os.path.exists(owners[0]) and time.time() < deadline:
        time.sleep(0.2)
        clean_stale_shared_memory()
    assert not os.path.exists(owners[0]) and not glob.glob(f"/dev/shm/{prefix}_*")
