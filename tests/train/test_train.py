"""Real Composer runs of yamls/demo.yaml on CPU: train, checkpoint, resume (also after SIGKILL), and DDP
over two gloo processes."""

import json
import os
import signal
import subprocess

from recipe.config import load_config
from recipe.callbacks.jsonl_logger import read_metrics
from recipe.train import main
from tests.train.conftest import DEMO_YAML, PYTHON, REPO, run_train

LOSS = "loss/train/total"


def test_trains_saves_and_resumes(overrides, tmp_path):
    args = overrides("max_duration=4ba", "save_interval=2ba", "callbacks.speed_monitor.window_size=2",
                     "autoresume=true", run_name="fit")
    first = main(load_config(DEMO_YAML, args))
    assert int(first.state.timestamp.batch) == 4
    ckpts = sorted(os.listdir(tmp_path / "fit" / "ckpt"))
    assert "ep0-ba4-rank0.pt" in ckpts and "latest-rank0.pt" in ckpts
    first.close()

    second = main(load_config(DEMO_YAML, args + ["max_duration=6ba"]))  # same run, longer: resumes
    assert int(second.state.timestamp.batch) == 6
    second.close()

    log = str(tmp_path / "fit" / "metrics.jsonl")
    total = read_metrics(log, LOSS)
    assert sorted(total) == list(range(6))
    for source in ("laion", "mmc4"):
        per_source = read_metrics(log, f"loss/train/loss_{source}")
        assert sorted(per_source) == list(range(6)) and all(v > 0 for v in per_source.values())
    # total = 0.2 * laion + 1.0 * mmc4 (the demo's multipliers)
    laion, mmc4 = read_metrics(log, "loss/train/loss_laion"), read_metrics(log, "loss/train/loss_mmc4")
    for step, value in total.items():
        assert abs(value - (0.2 * laion[step] + mmc4[step])) < 1e-5
    assert read_metrics(log, "throughput/device/flops_per_sec")
    # data-shaping rejections are counted by source and reason, cumulative across the resume
    rejected = read_metrics(log, "data/rejected/mmc4/too_few_images")
    assert sorted(rejected) == list(range(1, 7)) and all(v >= 0 for v in rejected.values())
    # the second run resumed at batch 4: every step was trained (and logged) exactly once
    records = [json.loads(line) for line in open(log)]
    assert sorted(r["step"] for r in records if LOSS in r) == list(range(6))


def _losses(path):
    return read_metrics(path, LOSS)


def test_sigkilled_run_resumes_to_identical_losses(overrides, tmp_path):
    steps = 7
    # MMC4 epochs of 32 documents = 4 steps: the resumed part crosses an epoch boundary.
    common = [f"max_duration={steps}ba", "save_interval=3ba", "autoresume=true", "train_data.num_workers=1",
              "train_data.sources.mmc4.epoch_size=32", "device_train_microbatch_size=8"]
    reference = run_train(overrides(*common, run_name="straight"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    args = overrides(*common, run_name="killed")
    cmd = [PYTHON, os.path.join(REPO, "recipe", "train.py"), DEMO_YAML, *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # The console logs batch 5 after the batch-3 checkpoint was written: kill there, mid-epoch.
    for line in proc.stderr:  # Composer's console logger writes to stderr
        if line.startswith("[batch=5/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_log = str(tmp_path / "killed" / "metrics.jsonl")
    assert max(_losses(killed_log)) < steps - 1  # it really stopped early

    resumed = run_train(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = _losses(str(tmp_path / "straight" / "metrics.jsonl"))
    assert sorted(expected) == list(range(steps))
    assert _losses(killed_log) == expected  # exact float equality, step by step


def test_two_process_gloo_ddp(overrides, tmp_path):
    proc = run_train(overrides("max_duration=3ba", "save_interval=3ba", run_name="ddp"),
                     launcher=[os.path.join(os.path.dirname(PYTHON), "composer"), "-n", "2"])
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    log = str(tmp_path / "ddp" / "metrics.jsonl")
    assert sorted(_losses(log)) == [0, 1, 2]
    # two ranks x (16 LAION + 8 MMC4) samples per step
    samples = read_metrics(log, "time/sample")
    assert samples[2] == 2 * 2 * 24
    assert os.path.exists(tmp_path / "ddp" / "ckpt" / "ep0-ba3-rank0.pt")


def test_wandb_offline_logs_redacted_config_and_caption_table(overrides, tmp_path, demo_assets):
    secret = "NOT-TO-BE-LOGGED-1234"
    images = ",".join(p for p, _ in demo_assets["samples"][:2])
    proc = run_train(overrides("max_duration=2ba", "save_interval=2ba", "loggers.wandb.mode=offline",
                               f"loggers.wandb.dir={tmp_path}/wb", f"variables.aws_secret_access_key={secret}",
                               f"callbacks.captions={{images: [{images}], interval: 2ba}}", run_name="wb"),
                     env={**os.environ, "WANDB_SILENT": "true"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "wb") for f in fs]
    assert any(f.endswith(".wandb") for f in files)
    assert any("captions" in f and f.endswith(".table.json") for f in files)
    for f in files:
        assert secret.encode() not in open(f, "rb").read(), f
    assert any(b"***" in open(f, "rb").read() for f in files if f.endswith(".wandb"))


def test_scheduled_gc_collects_only_on_its_batches(overrides):
    """With `callbacks.scheduled_gc`, automatic collection is off while training and every collection
    inside the loop happens at the end of an interval's batch; it is on again afterwards."""
    import gc

    from composer import Callback

    from recipe.train import build_trainer

    events = []

    class Recorder(Callback):
        def batch_start(self, state, logger):
            events.append(("start", int(state.timestamp.batch), gc.isenabled()))

        def batch_end(self, state, logger):  # runs after ScheduledGC's batch_end (registered later)
            events.append(("end", int(state.timestamp.batch)))

    def on_gc(phase, info):
        if phase == "start":
            events.append(("gc", info["generation"]))

    trainer = build_trainer(load_config(DEMO_YAML, overrides("max_duration=4ba", "save_folder=null",
                                                             "callbacks.scheduled_gc.interval=2")))
    trainer.state.callbacks.append(Recorder())
    gc.callbacks.append(on_gc)
    try:
        trainer.fit()
    finally:
        gc.callbacks.remove(on_gc)
    trainer.close()
    assert gc.isenabled()
    loop = events[events.index(("start", 0, False)):]
    assert [e for e in loop if e[0] == "start"] == [("start", b, False) for b in range(4)]
    # Composer's timestamp counts the batch as done by BATCH_END: collections follow batches 2 and 4.
    ends = [i for i, e in enumerate(loop) if e[0] == "end"]
    collected_before = [sum(e[0] == "gc" for e in loop[(ends[k - 1] if k else 0):ends[k]]) for k in range(4)]
    assert collected_before == [0, 1, 0, 1], loop


def test_per_source_microbatches_train_like_mixed_ones(overrides, tmp_path):
    """A real run with one source per microbatch (the FSDP default) logs the same per-source losses as the
    same steps with mixed microbatches: only the grouping of the forward/backward passes differs. (With a
    microbatch of 16, each source's token mean is over the same rows in both modes.)"""
    losses = {}
    for mode in ("mixed", "per_source"):
        trainer = main(load_config(DEMO_YAML, overrides("max_duration=3ba", "save_folder=null",
                                                        "device_train_microbatch_size=16",
                                                        f"train_data.microbatches={mode}", run_name=mode)))
        trainer.close()
        log = str(tmp_path / mode / "metrics.jsonl")
        losses[mode] = {k: read_metrics(log, f"loss/train/{k}") for k in ("total", "loss_laion", "loss_mmc4")}
    for key, by_step in losses["mixed"].items():
        assert sorted(by_step) == [0, 1, 2]
        for step, value in by_step.items():
            assert abs(losses["per_source"][key][step] - value) < 1e-5 * max(1.0, abs(value)), (key, step)
