"""Training that survives faults, on the demo config (CPU, real Composer runs): checkpoints verified against
their manifests with fallback to the newest good one, retention across restarts, resume-time data checks,
the spike guard's rollback, and preflight of object-store URLs."""

import json
import os
import signal
import subprocess

import pytest

from recipe.config import ConfigError, load_config, validate
from recipe.callbacks.jsonl_logger import read_metrics
from recipe.preflight import PreflightError, check_urls
from tests.train.conftest import DEMO_YAML, PYTHON, REPO, run_train

LOSS = "loss/train/total"
POISONED = os.path.join(REPO, "tests", "train", "poisoned_train.py")


def _losses(tmp_path, run):
    return read_metrics(str(tmp_path / run / "metrics.jsonl"), LOSS)


def _run_poisoned(poison: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, POISONED, poison, DEMO_YAML, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"})


def _overwrite(path, offset: int, size: int = 4096):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)


def test_damaged_checkpoints_are_set_aside_and_the_run_resumes_from_the_newest_good_one(overrides, tmp_path):
    common = ["max_duration=8ba", "save_interval=2ba", "autoresume=true", "save_num_checkpoints_to_keep=-1"]
    straight = run_train(overrides(*common, run_name="straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    args = overrides(*common, run_name="hurt")
    first = run_train(args + ["max_duration=6ba"])
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tmp_path / "hurt" / "ckpt"
    os.truncate(ckpt / "ep0-ba6-rank0.pt", 0)  # what a full disk leaves
    size = os.path.getsize(ckpt / "ep0-ba4-rank0.pt")
    _overwrite(ckpt / "ep0-ba4-rank0.pt", size // 2)  # same size, 4 KiB changed: would load and train NaN
    os.remove(ckpt / "latest-rank0.pt")  # not needed: the folder is listed

    resumed = run_train(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = resumed.stderr.splitlines()
    assert any(line.startswith("checkpoint ep0-ba6-rank0.pt: ") and "0 bytes" in line for line in lines)
    assert any(line.startswith("checkpoint ep0-ba4-rank0.pt: ") and "SHA-256" in line for line in lines)
    assert "resuming from checkpoint ep0-ba2-rank0.pt (verified against its manifest)" in lines
    assert sorted(os.listdir(ckpt / "rejected")) == ["ep0-ba4-rank0.pt", "ep0-ba4-rank0.pt.manifest.json",
                                                     "ep0-ba6-rank0.pt", "ep0-ba6-rank0.pt.manifest.json"]
    # steps 2..7 were trained again from the batch-2 checkpoint: the loss curve is the uninterrupted one
    assert _losses(tmp_path, "hurt") == _losses(tmp_path, "straight")

    # nothing left that verifies: one line, exit 2, never a silent restart from step 0
    finished = [n for n in os.listdir(ckpt) if n.startswith("ep") and n.endswith(".pt")]
    assert len(finished) == 4  # batches 2 (the first attempt's), 4, 6, 8 (the resumed attempt's)
    for name in finished:
        _overwrite(ckpt / name, 1000)
    stopped = run_train(args + ["max_duration=10ba"])
    assert stopped.returncode == 2
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "none of its 4 finished checkpoint(s) verifies" in last
    assert "[batch=" not in stopped.stderr


def test_a_save_cut_short_is_not_resumed_from(overrides, tmp_path):
    """A checkpoint file without a manifest is a save that never finished: set aside, the one before is used."""
    args = overrides("max_duration=4ba", "save_interval=2ba", "autoresume=true", "save_num_checkpoints_to_keep=-1",
                     run_name="cut")
    assert run_train(args).returncode == 0
    ckpt = tmp_path / "cut" / "ckpt"
    os.remove(ckpt / "ep0-ba4-rank0.pt.manifest.json")
    resumed = run_train(args + ["max_duration=5ba"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint ep0-ba4-rank0.pt: no manifest (its save never finished); moved to" in resumed.stderr
    assert "resuming from checkpoint ep0-ba2-rank0.pt" in resumed.stderr


def test_retention_counts_the_checkpoints_of_earlier_attempts(overrides, tmp_path):
    args = overrides("save_interval=1ba", "autoresume=true", "save_num_checkpoints_to_keep=2", run_name="keep")
    for steps in (2, 4, 6):
        assert run_train(args + [f"max_duration={steps}ba"]).returncode == 0
    names = sorted(os.listdir(tmp_path / "keep" / "ckpt"))
    assert names == ["ep0-ba5-rank0.pt", "ep0-ba5-rank0.pt.manifest.json", "ep0-ba6-rank0.pt",
                     "ep0-ba6-rank0.pt.manifest.json", "latest-rank0.pt"]


def test_resuming_with_a_changed_global_batch_or_shaping_stops_unless_allowed(overrides, tmp_path):
    args = overrides("max_duration=2ba", "save_interval=2ba", "autoresume=true", run_name="changed")
    assert run_train(args).returncode == 0
    bigger = run_train(args + ["max_duration=3ba", "train_data.sources.laion.batch_size=32",
                                              "device_train_microbatch_size=32"])
    assert bigger.returncode == 2
    last = bigger.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint ep0-ba2-rank0.pt was written by a run with other data settings")
    assert "laion.global_batch 16 -> 32" in last and "allow_data_change_on_resume=true" in last
    shaping = run_train(args + ["max_duration=3ba", "train_data.sources.mmc4.max_tokens=40"])
    assert shaping.returncode == 2 and "mmc4.max_tokens 48 -> 40" in shaping.stderr
    allowed = run_train(args + ["max_duration=3ba", "train_data.sources.mmc4.max_tokens=40",
                                "allow_data_change_on_resume=true"])
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "resuming with changed data settings (mmc4.max_tokens 48 -> 40), as allowed" in allowed.stderr


GUARD = ["autoresume=true", "save_interval=3ba", "callbacks.spike_guard.window=3",
         "callbacks.spike_guard.skip_batches=2", "train_data.num_workers=1"]


def test_spike_guard_rolls_back_skips_the_window_and_a_killed_rollback_resumes_identically(overrides, tmp_path):
    poison = "7:nan,10:60"  # a NaN loss at batch 7, a 60x spike at batch 10
    straight = _run_poisoned(poison, overrides(*GUARD, "max_duration=13ba", run_name="guarded"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    err = straight.stderr
    assert "spike guard: batch 7: loss nan (non-finite); rolling back" in err
    assert "spike guard: rolled back to ep0-ba6-rank0.pt; batches 6-7 will be drawn but not trained on" in err
    assert "spike guard: batch 10: loss " in err and "> 3 x median" in err
    assert "spike guard: rolled back to ep1-ba9-rank0.pt; batches 9-10 will be drawn but not trained on" in err
    log = str(tmp_path / "guarded" / "metrics.jsonl")
    assert sorted(read_metrics(log, "spike_guard/skipped_batch")) == [6, 7, 9, 10]
    losses = read_metrics(log, LOSS)
    assert sorted(losses) == list(range(13))
    assert sorted(read_metrics(log, "spike_guard/grad_norm")) == list(range(13))
    # no checkpoint holds NaN weights: every later batch trains on a finite loss
    assert all(losses[s] < 50 for s in (8, 11, 12))

    # The same run, SIGKILLed after its first rollback and before the next checkpoint, then rerun: the
    # batch-6 checkpoint does not know the skip; replay meets the NaN again and skips it the same way.
    args = overrides(*GUARD, "max_duration=13ba", run_name="guarded-killed")
    proc = subprocess.Popen([PYTHON, POISONED, poison, DEMO_YAML, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO,
                                                                    "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:
        if line.startswith("[batch=8/"):  # after the rollback to batch 6 (console batches count from 1)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rerun = _run_poisoned(poison, args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _losses(tmp_path, "guarded-killed") == losses


def test_spike_guard_stops_with_a_report_after_max_rollbacks(overrides, tmp_path):
    proc = _run_poisoned("4:nan,5:nan", overrides(*GUARD, "max_duration=8ba", "callbacks.spike_guard.max_rollbacks=1",
                                                  run_name="exhausted"))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("error: spike guard: batch 5: loss nan (non-finite) after 1 rollback(s), the limit "
                    "(callbacks.spike_guard.max_rollbacks); earlier: batch 4: loss nan (non-finite)")


def test_spike_guard_needs_autoresume(overrides):
    raw = load_config(DEMO_YAML, overrides("callbacks.spike_guard.window=3"))
    with pytest.raises(ConfigError, match="callbacks.spike_guard: rolls back to the run's own checkpoints"):
        validate(raw)


def test_epoch_size_is_checked_against_the_launched_world_size(overrides, monkeypatch):
    raw = load_config(DEMO_YAML, overrides("train_data.sources.mmc4.epoch_size=9"))
    validate(raw)  # one process: 9 >= 8
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"train_data.sources.mmc4.epoch_size=9: holds no full global batch "
                                          r"\(2 process\(es\) x batch_size 8 = 16\)"):
        validate(raw)


def _upload_tree(client, root: str, bucket: str, prefix: str):
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, root)}")


def test_preflight_names_a_bad_object_store_url_in_one_line_before_the_model_is_built(
        overrides, demo_assets, s3_server, monkeypatch, tmp_path):
    _upload_tree(s3_server, os.path.join(demo_assets["out"], "mds", "laion"), "data", "mds/laion")
    laion = "train_data.sources.laion.streams.main.remote"
    cases = {
        f"{laion}=s3://data/mds/laion-typo": f"{laion}: s3://data/mds/laion-typo: no index.json there",
        f"{laion}=s3://no-such-bucket/mds/laion": f"{laion}: s3://no-such-bucket/mds/laion: the bucket does not exist",
        f"{laion}=ftp://data/mds/laion": f"{laion}: ftp://data/mds/laion: unsupported scheme ftp://",
        "save_folder=s3:///runs": "save_folder: s3:///runs: no bucket named",
        "load_path=s3://data/runs/ep0-ba4-rank0.pt": "load_path: s3://data/runs/ep0-ba4-rank0.pt: no such object",
    }
    for override, message in cases.items():
        with pytest.raises(PreflightError) as e:
            check_urls(validate(load_config(DEMO_YAML, overrides(override))))
        assert str(e.value).startswith(message), override
    # from the command line: one line, exit 2, before the model is built
    proc = run_train(overrides(f"{laion}=s3://no-such-bucket/mds/laion", run_name="preflight"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"preflight: {cases[f'{laion}=s3://no-such-bucket/mds/laion']}"
    assert "trainable parameters" not in proc.stderr

    check_urls(validate(load_config(DEMO_YAML, overrides(f"{laion}=s3://data/mds/laion"))))  # all good
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(PreflightError, match=f"^{laion}: s3://data/mds/laion: no AWS credentials found "
                                             r"\(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                                             r"or run where an instance role applies\)$"):
        check_urls(validate(load_config(DEMO_YAML, overrides(f"{laion}=s3://data/mds/laion"))))


def test_checkpoints_in_an_object_store_carry_manifests_and_a_damaged_one_is_marked_rejected(
        overrides, s3_server, tmp_path):
    args = overrides("max_duration=4ba", "save_interval=2ba", "autoresume=true", "save_folder=s3://data/runs/remote",
                     run_name="remote")
    first = run_train(args)
    assert first.returncode == 0, first.stderr[-3000:]
    keys = {o["Key"] for o in s3_server.list_objects_v2(Bucket="data", Prefix="runs/remote/")["Contents"]}
    assert {"runs/remote/ep0-ba2-rank0.pt", "runs/remote/ep0-ba2-rank0.pt.manifest.json",
            "runs/remote/ep0-ba4-rank0.pt", "runs/remote/ep0-ba4-rank0.pt.manifest.json"} <= keys
    body = bytearray(s3_server.get_object(Bucket="data", Key="runs/remote/ep0-ba4-rank0.pt")["Body"].read())
    body[len(body) // 2:len(body) // 2 + 4096] = b"\xff" * 4096
    s3_server.put_object(Bucket="data", Key="runs/remote/ep0-ba4-rank0.pt", Body=bytes(body))

    resumed = run_train(args + ["max_duration=5ba"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ("checkpoint ep0-ba4-rank0.pt: ep0-ba4-rank0.pt fails its SHA-256 check (changed after it was written); "
            "marked rejected by s3://data/runs/remote/rejected/ep0-ba4-rank0.pt.reason.txt") in resumed.stderr
    assert "resuming from checkpoint ep0-ba2-rank0.pt (verified against its manifest)" in resumed.stderr
    marker = s3_server.get_object(Bucket="data", Key="runs/remote/rejected/ep0-ba4-rank0.pt.reason.txt")
    assert b"SHA-256" in marker["Body"].read()
