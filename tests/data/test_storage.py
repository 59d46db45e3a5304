"""Object storage (a real S3-speaking moto server), per-run cache folders, and shared memory left by a crashed
job (killed with its whole process group)."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import pytest

from recipe.data.shm import clean_stale_shared_memory
from recipe.data.sources import SourceConfig, build_train_dataloader

HERE = os.path.dirname(__file__)


@pytest.fixture
def s3(monkeypatch, mds_root):
    """A moto S3 server holding the fixture's laion MDS at s3://data/laion."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"])
    client.create_bucket(Bucket="data")
    src = os.path.join(mds_root, "laion")
    for path in glob.glob(os.path.join(src, "**", "*"), recursive=True):
        if os.path.isfile(path):
            client.upload_file(path, "data", "laion/" + os.path.relpath(path, src))
    yield env
    server.stop()


def pairs_source(remote):
    return {"laion": SourceConfig(kind="pairs", batch_size=4, epoch_size=40, streams={"laion": {"remote": remote}},
                                  shuffle_seed=3, num_canonical_nodes=1, shuffle_block_size=16)}


def take(spec, n=10):
    """The first n steps (default: the whole 10-step epoch, so Streaming's download threads are done at the end
    of the test, before the S3 server stops)."""
    out = []
    for batch in spec.dataloader:
        out.append((batch["laion"]["sample_idx"].tolist(), batch["laion"]["input_ids"].tolist()))
        if len(out) == n:
            return out


def test_s3_remote_is_cached_under_the_run_cache_root(s3, tmp_path, mds_root, flamingo_tokenizer, image_transform):
    remote = build_train_dataloader(pairs_source("s3://data/laion"), flamingo_tokenizer, image_transform, seed=0,
                                    num_workers=0, cache_root=str(tmp_path / "cache"))
    local = build_train_dataloader(pairs_source(os.path.join(mds_root, "laion")), flamingo_tokenizer,
                                   image_transform, seed=0, num_workers=0)
    assert take(remote) == take(local)
    cached = tmp_path / "cache" / "train" / "laion" / "laion"
    assert (cached / "index.json").exists() and list(cached.rglob("shard.*.mds"))


def test_crashed_job_shared_memory_does_not_block_the_next_job(s3, tmp_path, tokenizer_dir, flamingo_tokenizer,
                                                               image_transform):
    cache = str(tmp_path / "cache")
    sources = pairs_source("s3://data/laion")
    spec = {"tokenizer_dir": tokenizer_dir, "steps": 1, "num_workers": 0, "seed": 0, "load_state": None,
            "cache_root": cache, "crash": True, "sources": {n: dataclasses.asdict(c) for n, c in sources.items()}}
    spec_path = tmp_path / "crash.json"
    spec_path.write_text(json.dumps(spec))
    # The crashed job had its own temp dir (another container, or TMPDIR), so its file locks are not in ours.
    other_tmp = tmp_path / "other_tmp"
    other_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(other_tmp), PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, os.path.join(HERE, "resume_worker.py"), str(spec_path), str(tmp_path / "x")],
                          env=env, capture_output=True, start_new_session=True, timeout=240)
    assert proc.returncode == -9 and b"crashing" in proc.stdout, proc.stderr.decode()[-2000:]
    owners = {p: json.load(open(p)) for p in glob.glob("/dev/shm/flamingo-shm-owner.*[0-9]")}
    dead = [p for p, o in owners.items() if any(loc.startswith(cache) for loc in o["locals"])]
    assert len(dead) == 1
    prefix = dead[0].rsplit(".", 1)[1]
    leaked = set(glob.glob(f"/dev/shm/{prefix}_*"))
    assert f"/dev/shm/{prefix}_locals" in leaked  # the kill left the segments behind

    # A live job on the same host, started before the cleanup, must survive it.
    live = build_train_dataloader(pairs_source("s3://data/laion"), flamingo_tokenizer, image_transform, seed=0,
                                  num_workers=0, cache_root=str(tmp_path / "live_cache"), clean_stale_shm=False)
    live_prefix = live.dataloader.dataset.datasets["laion"]._shm_prefix_int
    live_segments = set(glob.glob(f"/dev/shm/{live_prefix:06}_*"))

    removed = set(clean_stale_shared_memory())
    assert leaked <= removed and not glob.glob(f"/dev/shm/{prefix}_*") and not os.path.exists(dead[0])
    assert not removed & live_segments and live_segments <= set(glob.glob(f"/dev/shm/{live_prefix:06}_*"))

    after_crash = build_train_dataloader(sources, flamingo_tokenizer, image_transform, seed=0, num_workers=0,
                                         cache_root=cache)
    assert len(take(after_crash)) == 10 and len(take(live)) == 10


def test_train_and_eval_and_two_runs_get_distinct_caches(s3, tmp_path, monkeypatch, flamingo_tokenizer,
                                                         image_transform):
    """One job's train and eval loaders over the same remote, and a second run on the same host, each get
    their own cache folder (Streaming refuses two live datasets on one `local` with a remote)."""
    from recipe.data.sources import build_eval_dataloader, default_cache_root

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setenv("COMPOSER_RUN_NAME", "run-a")
    root_a = default_cache_root()
    train = build_train_dataloader(pairs_source("s3://data/laion"), flamingo_tokenizer, image_transform, seed=0,
                                   num_workers=0)
    evaluation = build_eval_dataloader("laion", pairs_source("s3://data/laion")["laion"], flamingo_tokenizer,
                                       image_transform, num_workers=0)
    monkeypatch.setenv("COMPOSER_RUN_NAME", "run-b")
    other_run = build_train_dataloader(pairs_source("s3://data/laion"), flamingo_tokenizer, image_transform, seed=0,
                                       num_workers=0)
    assert default_cache_root() != root_a and root_a.startswith(str(tmp_path))
    assert take(train) == take(other_run)
    assert sum(b["laion"]["input_ids"].shape[0] for b in evaluation.dataloader) == 48
    assert os.path.isdir(os.path.join(root_a, "train", "laion", "laion"))
    assert os.path.isdir(os.path.join(root_a, "eval", "laion", "laion"))
    assert os.path.isdir(os.path.join(default_cache_root(), "train", "laion", "laion"))
