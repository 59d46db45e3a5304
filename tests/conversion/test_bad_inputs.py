"""Inputs nobody planned for: each is rejected and counted, or stops the run with one line (exit 1), or
converts with exit 3 when parts of an input were unreadable; never a traceback, a bad record written or a
silent loss. The scripts run as users run them (subprocesses) where the exit code or the console matters."""

import json
import os
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conversion.fixtures import (
    b64, chatgpt_seq, image_bytes, laion_members, mmc4_doc, mmc4_image, read_mds, write_jsonl_zip, write_tar,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "convert", f"{script}.py"), *args, "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def report(out) -> dict:
    with open(os.path.join(out, "conversion_report.json")) as f:
        return json.load(f)


def laion_tar(path, keys, first_seed=0):
    members = []
    for i, key in enumerate(keys):
        members += laion_members(key, image_bytes(first_seed + i), f"caption {key}".encode())
    return write_tar(str(path), members)


# ---------------------------------------------------------------------------------- bad records never written

def test_chatgpt_placeholders_without_images_reject_the_sequence(tmp_path):
    i1, i2 = image_bytes(1), image_bytes(2)
    good = chatgpt_seq({"_!_IMAGE1_!_": i1}, "A _!_IMAGE1_!_ cat.")
    no_entry = chatgpt_seq({"_!_IMAGE1_!_": i1}, "A _!_IMAGE1_!_ cat and _!_IMAGE2_!_ a dog.")
    more_placeholders = chatgpt_seq({"_!_IMAGE1_!_": i1, "_!_IMAGE2_!_": i2},
                                    "_!_IMAGE1_!_ one _!_IMAGE2_!_ two _!_IMAGE3_!_ three")
    no_data = {**chatgpt_seq({"_!_IMAGE1_!_": i1}, "x _!_IMAGE1_!_ y _!_IMAGE2_!_ z"),
               "image_map": {"_!_IMAGE1_!_": {"base64_image": b64(i1)}, "_!_IMAGE2_!_": {"url": "http://x"}}}
    (tmp_path / "seqs.jsonl").write_text("\n".join(json.dumps(d) for d in (good, no_entry, more_placeholders,
                                                                           no_data)) + "\n")
    out = tmp_path / "out"
    proc = run("chatgpt_to_mds", "--input", str(tmp_path / "seqs.jsonl"), "--output", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert report(out)["rejected"] == {"missing_image_in_sample": 3}
    assert [s["key"] for s in read_mds(str(out))] == ["seqs/0"]


def test_tar_members_with_paths_are_rejected_and_never_used(tmp_path):
    members = laion_members("000000000", image_bytes(0), b"fine")
    members += [("../evil.jpg", image_bytes(1)), ("../evil.txt", b"climbs out")]
    members += [("/abs/x.jpg", image_bytes(2)), ("/abs/x.txt", b"absolute")]
    write_tar(str(tmp_path / "00000.tar"), members)
    out = tmp_path / "out"
    proc = run("laion_to_mds", "--input", str(tmp_path / "00000.tar"), "--output", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert report(out)["rejected"] == {"path_traversal_name": 2}
    assert [s["key"] for s in read_mds(str(out))] == ["000000000"]
    assert not (tmp_path / "evil.jpg").exists()

    # OpenFlamingo's MMC4 tars: same rule
    doc = mmc4_doc(1, [mmc4_image("a.jpg", 0, b64(image_bytes(3)))])
    write_tar(str(tmp_path / "m.tar"), [("ok.json", json.dumps(doc).encode()),
                                        ("../../up.json", json.dumps(doc).encode())])
    out = tmp_path / "out-mmc4"
    proc = run("mmc4_to_mds", "--input", str(tmp_path / "m.tar"), "--output", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert report(out)["rejected"] == {"path_traversal_name": 1}
    assert [s["key"] for s in read_mds(str(out))] == ["ok"]


# ----------------------------------------------------------------------- one line, or counted, never a traceback

def _mmc4_shard(tmp_path, names, shard="0"):
    (tmp_path / "images" / shard).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (tmp_path / "images" / shard / name).write_bytes(image_bytes(i))
    docs = [json.dumps(mmc4_doc(1, [mmc4_image(name)], f"u{i}")) for i, name in enumerate(names)]
    return write_jsonl_zip(str(tmp_path / f"docs_shard_{shard}_v2.jsonl.zip"), docs)


def test_an_unreadable_image_file_is_counted_not_fatal(tmp_path):
    shard = _mmc4_shard(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    unreadable = tmp_path / "images" / "0" / "b.jpg"
    if os.geteuid() == 0:  # root reads a mode-0 file: use a file the kernel refuses to read to anyone
        unreadable.unlink()
        unreadable.symlink_to("/sys/bus/pci/rescan")
    else:
        os.chmod(unreadable, 0)
    with pytest.raises(PermissionError):  # the premise: reading it fails
        open(unreadable, "rb").read()
    out = tmp_path / "out"
    proc = run("mmc4_to_mds", "--input", shard, "--image-dir", str(tmp_path / "images"), "--output", str(out),
               "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    r = report(out)
    assert r["samples_written"] == 2 and r["rejected"] == {"no_usable_image": 1}
    assert r["images_dropped"] == {"image_unreadable": 1}


def test_a_setup_error_in_a_worker_is_one_line(tmp_path):
    for name in ("a", "b"):
        pq.write_table(pa.Table.from_pylist([{"key": "k", "caption": "c"}]), str(tmp_path / f"{name}.parquet"))
    proc = run("laion_to_mds", "--input", str(tmp_path / "*.parquet"), "--output", str(tmp_path / "out"),
               "--workers", "2")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert last_line(proc).startswith("error: ") and "parquet has no image column" in last_line(proc)
    assert not (tmp_path / "out" / "index.json").exists()


def test_img2dataset_side_files_are_not_inputs(tmp_path):
    """img2dataset's output folder: <shard>.tar, the metadata <shard>.parquet, <shard>_stats.json."""
    laion_tar(tmp_path / "00000.tar", ["000000000", "000000001"])
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success", "caption": "c"}
                                         for k in ("000000000", "000000001")]), str(tmp_path / "00000.parquet"))
    (tmp_path / "00000_stats.json").write_text(json.dumps({"count": 2, "successes": 2}))
    for pattern in (str(tmp_path), str(tmp_path / "*")):  # a folder, and a glob that matches everything
        out = tmp_path.parent / f"out-{len(pattern)}"
        proc = run("laion_to_mds", "--input", pattern, "--output", str(out), "--workers", "2")
        assert proc.returncode == 0, proc.stderr
        r = report(out)
        assert [os.path.basename(u) for u in r["inputs"]] == ["00000.tar"] and r["samples_written"] == 2


def test_output_that_is_a_file_is_one_line(tmp_path):
    laion_tar(tmp_path / "00000.tar", ["000000000"])
    (tmp_path / "taken").write_text("not a folder")
    proc = run("laion_to_mds", "--input", str(tmp_path / "00000.tar"), "--output", str(tmp_path / "taken"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last_line(proc) == f"error: --output {tmp_path / 'taken'} is a file, not a folder"


# ------------------------------------------------------------------------------------- no silent data loss

def test_a_wrong_image_dir_stops_with_the_folder_and_first_missing_path(tmp_path):
    shard = _mmc4_shard(tmp_path, ["a.jpg", "b.jpg"])
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    proc = run("mmc4_to_mds", "--input", shard, "--image-dir", str(wrong), "--output", str(tmp_path / "out"),
               "--workers", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = last_line(proc)
    assert line.startswith(f"error: {shard}: 2 of 2 images are missing under {wrong} (first: {wrong}/0/a.jpg)")
    assert "--allow-missing-images" in line
    assert not (tmp_path / "out" / "index.json").exists()
    proc = run("mmc4_to_mds", "--input", shard, "--image-dir", str(wrong), "--output", str(tmp_path / "out"),
               "--workers", "1", "--allow-missing-images")
    assert proc.returncode == 0 and report(tmp_path / "out")["rejected"] == {"no_usable_image": 2}


def test_a_truncated_shard_exits_3_and_says_so(tmp_path):
    good = _mmc4_shard(tmp_path, ["a.jpg"], shard="0")
    cut = _mmc4_shard(tmp_path, ["b.jpg", "c.jpg"], shard="1")
    data = open(cut, "rb").read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    args = ["--input", good, cut, "--image-dir", str(tmp_path / "images"), "--output", str(tmp_path / "out"),
            "--workers", "1"]
    proc = run("mmc4_to_mds", *args)
    assert proc.returncode == 3, proc.stderr
    assert "1 with unreadable parts (input_unreadable=1)" in proc.stderr
    assert last_line(proc).startswith("exit 3: parts of 1 input(s) were unreadable")
    assert report(tmp_path / "out")["samples_written"] == 1  # what could be read is published
    assert run("mmc4_to_mds", *args, "--accept-input-errors").returncode == 0


def test_a_tar_cut_at_a_member_boundary_is_caught_by_img2datasets_stats(tmp_path):
    keys = [f"00000000{i}" for i in range(4)]
    laion_tar(tmp_path / "00000.tar", keys)
    (tmp_path / "00000_stats.json").write_text(json.dumps({"count": 4, "successes": 4}))
    with tarfile.open(tmp_path / "00000.tar") as tf:
        cut_at = next(m for m in tf.getmembers() if m.name == f"{keys[2]}.jpg").offset  # a header boundary
    data = (tmp_path / "00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(data[:cut_at])
    proc = run("laion_to_mds", "--input", str(tmp_path / "00000.tar"), "--output", str(tmp_path / "out"),
               "--workers", "1")
    assert proc.returncode == 3, proc.stderr
    r = report(tmp_path / "out")
    assert r["samples_written"] == 2 and r["input_errors"] == {"records_missing_vs_img2dataset_stats": 2}

    # With the sidecar parquet (status per key) the same check counts by key.
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success"} for k in keys]
                                        + [{"key": "000000009", "status": "failed_to_download"}]),
                   str(tmp_path / "00000.parquet"))
    proc = run("laion_to_mds", "--input", str(tmp_path / "00000.tar"), "--output", str(tmp_path / "out2"),
               "--workers", "1")
    assert proc.returncode == 3
    assert report(tmp_path / "out2")["input_errors"] == {"records_missing_vs_img2dataset_stats": 2}


def test_an_output_root_with_another_conversion_is_not_rewritten(tmp_path):
    laion_tar(tmp_path / "a.tar", ["000000000", "000000001"])
    laion_tar(tmp_path / "b.tar", ["000010000"], first_seed=5)
    out = str(tmp_path / "out")
    assert run("laion_to_mds", "--input", str(tmp_path / "a.tar"), "--output", out).returncode == 0
    assert run("laion_to_mds", "--input", str(tmp_path / "a.tar"), "--output", out).returncode == 0  # resume
    proc = run("laion_to_mds", "--input", str(tmp_path / "b.tar"), "--output", out)
    assert proc.returncode == 1
    assert "already holds 1 input(s) this run does not name" in last_line(proc)
    assert "--overwrite" in last_line(proc) and "--append" in last_line(proc)
    assert sorted(s["key"] for s in read_mds(out)) == ["000000000", "000000001"]  # untouched

    # another converter into the same root: refused too (no --append for that)
    docs = write_jsonl_zip(str(tmp_path / "docs_shard_0_v2.jsonl.zip"), [json.dumps(mmc4_doc(1, []))])
    proc = run("mmc4_to_mds", "--input", docs, "--image-dir", str(tmp_path), "--output", out)
    assert proc.returncode == 1 and "already holds a laion conversion" in last_line(proc)

    proc = run("laion_to_mds", "--input", str(tmp_path / "b.tar"), "--output", out, "--append")
    assert proc.returncode == 0, proc.stderr
    assert sorted(s["key"] for s in read_mds(out)) == ["000000000", "000000001", "000010000"]
    assert [os.path.basename(u) for u in report(out)["inputs"]] == ["a.tar", "b.tar"]

    proc = run("laion_to_mds", "--input", str(tmp_path / "b.tar"), "--output", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert [s["key"] for s in read_mds(out)] == ["000010000"]
    assert len(os.listdir(os.path.join(out, "parts"))) == 1  # a.tar's unit is gone


# --------------------------------------------------------------------------------------- one name, one rule

def test_bad_utf8_and_gifs_are_treated_alike_everywhere(tmp_path):
    lines = [json.dumps({"image": "a.png", "caption": "fine"}).encode(), b'{"image": "a.png", "caption": "\xff"}']
    (tmp_path / "a.png").write_bytes(image_bytes(1, "PNG"))
    (tmp_path / "pairs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert run("jsonl_to_mds", "--kind", "pairs", "--input", str(tmp_path / "pairs.jsonl"),
               "--output", str(out)).returncode == 0
    assert report(out)["rejected"] == {"bad_utf8_text": 1}

    gif = image_bytes(2, "GIF")
    write_tar(str(tmp_path / "00000.tar"), laion_members("000000000", gif, b"a gif", ext="gif"))
    pq.write_table(pa.Table.from_pylist([{"key": "000000001", "jpg": gif, "caption": "a gif"}]),
                   str(tmp_path / "00001.parquet"))
    out = tmp_path / "gifs"
    proc = run("laion_to_mds", "--input", str(tmp_path / "00000.tar"), str(tmp_path / "00001.parquet"),
               "--output", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(s["key"] for s in read_mds(str(out))) == ["000000000", "000000001"]


def test_help_states_the_exit_codes():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "convert", "laion_to_mds.py"), "--help"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0
    for code in ("0  converted", "1  input or setup error", "3  converted, but parts of some inputs"):
        assert code in proc.stdout
