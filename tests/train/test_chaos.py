"""Chaos: a short demo run SIGKILLed again and again at random moments (startup, mid-step, in the middle of a
checkpoint save), with its newest checkpoint corrupted once, restarted until it finishes; every loss it ever
logged equals the uninterrupted run's loss at that step. Once with one process, once with two (gloo DDP)."""

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tests.train.conftest import DEMO_YAML, PYTHON, REPO, run_train

LOSS = "loss/train/total"

COMMON = ["save_interval=2ba", "autoresume=true", "save_num_checkpoints_to_keep=2",
          "train_data.sources.mmc4.epoch_size=32", "device_train_microbatch_size=8"]


def _all_losses(path) -> list[tuple[int, float]]:
    """Every (step, loss) ever logged, replays included."""
    with open(path) as f:
        return [(r["step"], r[LOSS]) for r in map(json.loads, f) if LOSS in r]


def _kill_when(proc, ckpt_dir: str, plan: tuple[str, float]) -> threading.Thread:
    """SIGKILL the run's process group: after `delay` seconds ('time'), or as soon as a checkpoint file
    exists without its manifest, i.e. while it is being saved ('save')."""
    kind, delay = plan

    def watch():
        start = time.monotonic()
        while proc.poll() is None:
            if kind == "time" and time.monotonic() - start >= delay:
                break
            if kind == "save" and os.path.isdir(ckpt_dir) and any(
                    n.endswith(".pt") and n.startswith("ep") and not os.path.exists(os.path.join(ckpt_dir, n + ".manifest.json"))
                    for n in os.listdir(ckpt_dir)):
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _corrupt_newest(ckpt_dir: str) -> bool:
    done = sorted((n for n in os.listdir(ckpt_dir) if os.path.exists(os.path.join(ckpt_dir, n + ".manifest.json"))),
                  key=lambda n: int(n.split("-ba")[1].split("-")[0]))
    if len(done) < 2:  # the newest of two: with only one, the run would rightly stop (test_faults covers that)
        return False
    path = os.path.join(ckpt_dir, done[-1])
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\x00" * 4096)
    return True


# One process with a dataloader worker (its state is part of the resume) over 10 steps and two epochs of MMC4;
# two processes (gloo DDP, 2 x 24 samples a step) over 6 steps, fewer kills: each start costs more there.
@pytest.mark.parametrize("processes,steps,workers", [(1, 10, 1), (2, 6, 0)])
def test_random_kills_and_a_corrupted_checkpoint_leave_the_loss_curve_unchanged(overrides, tmp_path, processes,
                                                                                steps, workers):
    launcher = [PYTHON] if processes == 1 else [os.path.join(os.path.dirname(PYTHON), "composer"), "-n", "2"]
    common = [*COMMON, f"max_duration={steps}ba", f"train_data.num_workers={workers}"]
    reference = run_train(overrides(*common, run_name="calm"), launcher=launcher)
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = dict(_all_losses(tmp_path / "calm" / "metrics.jsonl"))
    assert sorted(expected) == list(range(steps))

    args = overrides(*common, run_name="chaos")
    ckpt_dir = str(tmp_path / "chaos" / "ckpt")
    rng = random.Random(1234 + processes)
    # during startup, in the middle of a save, after a random step, and (one process) in a save again
    # (the step kill comes after two checkpoints exist: the newest is then corrupted and the one before used)
    plans = [("time", rng.uniform(0.5, 3.0)), ("save", 0), ("step", rng.randint(steps // 2 + 2, steps - 1)),
             ("save", 0)]
    plans = plans[:4 if processes == 1 else 3]
    kills = corrupted = 0
    for attempt in range(12):
        proc = subprocess.Popen(launcher + [os.path.join(REPO, "recipe", "train.py"), DEMO_YAML, *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        plan = plans[attempt] if attempt < len(plans) else ("none", 0)
        if plan[0] in ("time", "save"):
            _kill_when(proc, ckpt_dir, plan)
        err = []
        for line in proc.stderr:
            err.append(line)
            if plan[0] == "step" and line.startswith(f"[batch={plan[1]}/"):  # Composer's console counts from 1
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        err = "".join(err)
        if proc.returncode == 0:
            break
        assert proc.returncode in (-signal.SIGKILL, 137, 1), err[-3000:]  # the launcher reports a killed rank as 1
        kills += 1
        if plan[0] == "step" and _corrupt_newest(ckpt_dir):
            corrupted += 1
    assert proc.returncode == 0 and kills >= 3 and corrupted == 1, (kills, corrupted, err[-3000:])
    seen = _all_losses(tmp_path / "chaos" / "metrics.jsonl")
    assert {step for step, _ in seen} == set(range(steps))
    assert all(loss == expected[step] for step, loss in seen), [(s, l, expected[s]) for s, l in seen
                                                               if l != expected[s]]
    assert os.listdir(os.path.join(ckpt_dir, "rejected"))  # the corrupted one, set aside
