import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from convert import laion_to_mds, mmc4_to_mds
from tests.conversion.fixtures import (
    image_bytes, laion_members, mmc4_doc, mmc4_image, read_mds, write_jsonl_zip, write_tar,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def laion_shards(folder, n_shards=4, per_shard=12):
    """`n_shards` img2dataset tars; every 6th sample has an empty caption. Returns {key: image bytes}."""
    folder.mkdir()
    good = {}
    for s in range(n_shards):
        members = []
        for i in range(per_shard):
            key = f"{s:05d}{i:04d}"
            data = image_bytes(s * 100 + i)
            caption = b"" if i % 6 == 5 else f"caption {key}".encode()
            if caption:
                good[key] = data
            members += laion_members(key, data, caption)
        write_tar(str(folder / f"{s:05d}.tar"), members)
    return good


def converter(args, stderr):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen([sys.executable, os.path.join(REPO, "convert", "laion_to_mds.py"), *args],
                            stderr=stderr, env=env, start_new_session=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_after_sigkill(tmp_path, workers):
    good = laion_shards(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--workers", str(workers), "--no-progress",
            "--shard-size", "2kb"]
    # Shard 00001 comes through a named pipe that the test fills halfway and holds open: the converter writes
    # that unit's first shard, then waits for the rest of the tar, and is SIGKILLed while it waits.
    pipe = tmp_path / "in" / "00001.tar"
    data = pipe.read_bytes()
    pipe.unlink()
    os.mkfifo(pipe)
    held = []

    def feed():
        f = open(pipe, "wb")  # blocks until the converter opens the pipe
        held.append(f)
        f.write(data[: len(data) // 2])
        f.flush()

    feeder = threading.Thread(target=feed, daemon=True)
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = converter(args, stderr)
        feeder.start()
        deadline = time.monotonic() + 120
        while not glob.glob(str(out / "parts" / ".00001.tar-*.tmp" / "shard.*.mds")):
            if proc.poll() is not None or time.monotonic() > deadline:
                stderr.seek(0)
                pytest.fail(f"converter never wrote a shard of the piped unit (rc={proc.poll()}): {stderr.read()}")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    feeder.join()
    held[0].close()
    pipe.unlink()
    pipe.write_bytes(data)

    parts = os.listdir(out / "parts")
    assert not (out / "index.json").exists() and not (out / "conversion_report.json").exists()
    assert any(p.startswith(".") for p in parts)  # the unit being written when killed
    done_before = [p for p in parts if not p.startswith(".")]
    if workers == 1:
        assert len(done_before) == 1

    report = laion_to_mds.main(args)
    assert report["units_reused"] == len(done_before)
    assert report["samples_written"] == len(good) == 40
    assert report["rejected"] == {"caption_empty": 8}
    assert not any(p.startswith(".") for p in os.listdir(out / "parts"))
    keys = [s["key"] for s in read_mds(str(out))]
    assert len(keys) == len(set(keys)) and set(keys) == set(good)

    again = laion_to_mds.main(args)  # idempotent: nothing to redo, same dataset
    assert again["units_reused"] == 4 and again["samples_written"] == 40
    assert [s["key"] for s in read_mds(str(out))] == keys


def test_s3_input_and_output(tmp_path, s3_server):
    good = laion_shards(tmp_path / "in", n_shards=3, per_shard=6)
    for name in sorted(os.listdir(tmp_path / "in")):
        s3_server.upload_file(str(tmp_path / "in" / name), "data", f"raw/laion/{name}")
    report = laion_to_mds.main(["--input", "s3://data/raw/laion/{00000..00002}.tar", "--output",
                                "s3://data/mds/laion", "--workers", "2", "--no-progress"])
    assert report["samples_written"] == len(good) == 15 and report["rejected"] == {"caption_empty": 3}
    listing = {o["Key"] for o in s3_server.list_objects_v2(Bucket="data", Prefix="mds/laion/")["Contents"]}
    assert {"mds/laion/index.json", "mds/laion/conversion_report.json"} <= listing
    samples = read_mds(str(tmp_path / "cache"), remote="s3://data/mds/laion")
    assert {s["key"]: s["image"] for s in samples} == good

    # A unit whose marker never made it to the store (killed mid-upload) is redone; the others are reused.
    units = sorted(k for k in listing if k.endswith("/_unit.json"))
    s3_server.delete_object(Bucket="data", Key=units[1])
    s3_server.delete_object(Bucket="data", Key="mds/laion/index.json")
    again = laion_to_mds.main(["--input", "s3://data/raw/laion/", "--output", "s3://data/mds/laion",
                               "--workers", "1", "--no-progress"])
    assert again["units_reused"] == 2 and again["samples_written"] == 15
    samples = read_mds(str(tmp_path / "cache2"), remote="s3://data/mds/laion")
    assert sorted(s["key"] for s in samples) == sorted(good)


def test_mmc4_to_s3(tmp_path, s3_server):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(image_bytes(1))
    doc = mmc4_doc(2, [mmc4_image("a.jpg", 1), mmc4_image("b.jpg", 0)])
    shard = write_jsonl_zip(str(tmp_path / "shard_0.jsonl.zip"), [json.dumps(doc)])
    report = mmc4_to_mds.convert_mmc4([shard], "s3://data/mds/mmc4", image_dir=str(tmp_path / "img"),
                                      progress_bar=False)
    assert report["samples_written"] == 1 and report["images_dropped"] == {"image_missing": 1}
    (s,) = read_mds(str(tmp_path / "cache"), remote="s3://data/mds/mmc4")
    assert s["images"] == image_bytes(1) and s["similarity"] == [doc["similarity_matrix"][0]]
