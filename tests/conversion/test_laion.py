import io
import json
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from convert import laion_to_mds
from tests.conversion.fixtures import big_png, image_bytes, laion_members, read_mds, truncated_jpeg, write_tar


@pytest.fixture
def laion_inputs(tmp_path):
    """img2dataset output: two good-and-bad tars, a truncated tar and a parquet with image bytes.

    Returns (input dir, {key: (image bytes, caption)} of the good records, expected rejections)."""
    src = tmp_path / "laion"
    src.mkdir()
    good = {}

    def ok(key, seed, fmt="JPEG", ext="jpg"):
        data = image_bytes(seed, fmt)
        good[key] = (data, f"caption {key}")
        return laion_members(key, data, f"  caption {key} ".encode(), ext=ext)

    shard0 = (ok("000000000", 0) + ok("000000001", 1, "PNG", "png") + ok("000000002", 2, "WEBP", "webp")
              + laion_members("000000003", truncated_jpeg(), b"truncated")
              + laion_members("000000004", b"", b"zero bytes")
              + laion_members("000000005", b"<html>not found</html>", b"not an image")
              + laion_members("000000006", None, b"no image member")
              + laion_members("000000007", image_bytes(7), b"\xff\xfe bad utf8")
              + laion_members("000000008", image_bytes(8), b"   \n")
              + laion_members("000000009", image_bytes(9), None)
              + laion_members("000000010", image_bytes(10), b"bad sidecar", meta=b"{not json")
              + laion_members("000000011", big_png(), b"decompression bomb", ext="png")
              + laion_members("000000014", image_bytes(14, "PPM"), b"a format web images do not use")
              + [("._000000015.jpg", b"macOS resource fork, not a sample")]
              + ok("000000012", 12)
              + laion_members("000000016", image_bytes(16), None, meta={"key": "000000016", "caption": "in json"})
              + laion_members("000000000", image_bytes(13), b"same key again later in the tar"))
    good["000000016"] = (image_bytes(16), "in json")
    write_tar(str(src / "00000.tar"), shard0)
    shard1 = ok("000010000", 20) + laion_members("000000001", image_bytes(21), b"key of another shard")
    write_tar(str(src / "00001.tar"), shard1)
    # A download cut short: two complete samples, then the archive ends inside the third image.
    write_tar(str(tmp_path / "full.tar"), ok("000020000", 30) + ok("000020001", 31)
              + laion_members("000020002", image_bytes(32, size=64), b"cut"))
    raw = (tmp_path / "full.tar").read_bytes()
    cut = raw.index(image_bytes(32, size=64)) + 100
    (src / "00002.tar").write_bytes(raw[:cut])
    # A parquet written by img2dataset with output_format=parquet.
    rows = []
    for i, (img, cap) in enumerate([(image_bytes(40), "parquet caption 0"), (None, "no image"),
                                    (truncated_jpeg(41), "corrupt"), (image_bytes(42), ""),
                                    (image_bytes(43), "parquet caption 4")]):
        rows.append({"key": f"00003{i:04d}", "jpg": img, "caption": cap, "url": f"http://p/{i}",
                     "similarity": 0.25 if i else None, "width": 24, "height": 24})
    for i in (0, 4):
        good[rows[i]["key"]] = (rows[i]["jpg"], rows[i]["caption"])
    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "00003.parquet"))
    expected = {"caption_empty": 2, "caption_missing": 1, "bad_utf8_text": 1, "duplicate_key": 2,
                "image_corrupt": 2, "image_empty": 1, "image_missing": 2, "image_not_an_image": 1,
                "image_format_unsupported": 1, "image_too_large": 1, "input_truncated": 1,
                "json_malformed": 1}
    return src, tmp_path / "00003.parquet", good, expected


def test_laion_counts_and_byte_exact_round_trip(laion_inputs, tmp_path):
    src, parquet, good, expected = laion_inputs
    out = tmp_path / "out"
    report = laion_to_mds.convert_laion([str(src), str(parquet)], str(out), workers=2, max_image_pixels=100 * 100,
                                        progress_bar=False)
    assert report["samples_written"] == len(good) == 10
    assert report["rejected"] == expected
    assert report["input_errors"] == {"input_truncated": 1}
    assert {e["key"] for e in report["reject_examples"]["image_corrupt"]} == {"000000003", "000030002"}
    assert report["reject_examples"]["duplicate_key"][0]["key"] in ("000000000", "000000001")
    assert report["records_read"] == len(good) + sum(expected.values())
    assert report["inputs_read"] == 4
    on_disk = json.loads((out / "conversion_report.json").read_text())
    assert on_disk["samples_written"] == 10 and on_disk["rejected"] == expected

    samples = read_mds(str(out))
    assert sorted(s["key"] for s in samples) == sorted(good)
    for s in samples:
        data, caption = good[s["key"]]
        assert s["image"] == data  # original bytes, not re-encoded
        assert s["caption"] == caption
        assert (s["width"], s["height"]) == Image.open(io.BytesIO(data)).size
    by_key = {s["key"]: s for s in samples}
    assert by_key["000000000"]["url"] == "http://example.com/000000000.jpg"
    assert by_key["000000000"]["similarity"] == pytest.approx(0.31)
    assert math.isnan(by_key["000030000"]["similarity"])  # null in the parquet
    assert by_key["000030004"]["similarity"] == pytest.approx(0.25)
    # the first occurrence of a duplicated key is the one kept
    assert by_key["000000000"]["image"] == good["000000000"][0]


def test_folder_prefers_tars_and_cli(laion_inputs, tmp_path, capsys):
    src, parquet, good, expected = laion_inputs
    # img2dataset's webdataset mode also leaves a metadata-only parquet next to the tars: it must be ignored.
    pq.write_table(pa.Table.from_pylist([{"key": "x", "caption": "c", "url": "u"}]), str(src / "00000.parquet"))
    out = tmp_path / "out"
    report = laion_to_mds.main(["--input", str(src), "--output", str(out), "--workers", "1",
                                "--max-image-pixels", "10000", "--no-progress", "--shard-size", "2kb",
                                "--accept-input-errors"])  # one input is a truncated tar
    assert report["samples_written"] == 8
    assert report["shards"] > 1
    err = capsys.readouterr().err
    assert "inputs:  3 named, 3 converted" in err and ", 8 written, " in err
    assert sorted(s["key"] for s in read_mds(str(out))) == sorted(k for k in good if not k.startswith("00003"))


def test_max_samples_is_an_exact_prefix(laion_inputs, tmp_path):
    src, parquet, good, expected = laion_inputs
    out = tmp_path / "out"
    report = laion_to_mds.convert_laion([str(src)], str(out), max_samples=6, max_image_pixels=100 * 100,
                                        progress_bar=False)
    keys = [s["key"] for s in read_mds(str(out))]
    assert keys == ["000000000", "000000001", "000000002", "000000012", "000000016", "000010000"]
    assert report["samples_written"] == 6 and report["inputs_read"] == 2


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        laion_to_mds.main(["--input", str(tmp_path / "nope-{0..2}.tar"), "--output", str(tmp_path / "o")])
    assert e.value.code == 1
    assert "no input files match" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "index.json")


def test_changed_input_is_reconverted(laion_inputs, tmp_path):
    src, parquet, good, expected = laion_inputs
    out = tmp_path / "out"
    first = laion_to_mds.convert_laion([str(src)], str(out), max_image_pixels=100 * 100, progress_bar=False)
    write_tar(str(src / "00001.tar"), laion_members("000010005", image_bytes(50), b"replacement shard"))
    second = laion_to_mds.convert_laion([str(src)], str(out), max_image_pixels=100 * 100, progress_bar=False)
    assert second["units_reused"] == 2
    assert second["samples_written"] == first["samples_written"]  # one sample replaced by one sample
    keys = {s["key"] for s in read_mds(str(out))}
    assert "000010005" in keys and "000010000" not in keys


def test_oversized_member_is_rejected_unread(tmp_path, monkeypatch):
    from convert import readers
    small, large = image_bytes(1, size=16), image_bytes(2, size=64)
    monkeypatch.setattr(readers, "MAX_MEMBER_BYTES", (len(small) + len(large)) // 2)
    write_tar(str(tmp_path / "0.tar"), laion_members("a", small, b"small") + laion_members("b", large, b"large"))
    report = laion_to_mds.convert_laion([str(tmp_path / "0.tar")], str(tmp_path / "out"), progress_bar=False)
    assert report["samples_written"] == 1 and report["rejected"] == {"member_too_large": 1}


def test_cross_input_dedup_can_be_turned_off(laion_inputs, tmp_path):
    src, parquet, good, expected = laion_inputs
    report = laion_to_mds.main(["--input", str(src), "--output", str(tmp_path / "out"), "--no-progress",
                                "--max-image-pixels", "10000", "--no-cross-input-dedup", "--workers", "2",
                                "--accept-input-errors"])
    assert report["rejected"]["duplicate_key"] == 1  # only the repeat inside 00000.tar
    keys = [s["key"] for s in read_mds(str(tmp_path / "out"))]
    assert len(keys) == 9 and keys.count("000000001") == 2
