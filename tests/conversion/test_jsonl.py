import json
import math

from convert import jsonl_to_mds
from tests.conversion.fixtures import image_bytes, read_mds, truncated_jpeg


def test_pairs_lines(tmp_path):
    (tmp_path / "imgs").mkdir()
    a, b = image_bytes(1), image_bytes(2, "PNG")
    (tmp_path / "imgs" / "a.jpg").write_bytes(a)
    (tmp_path / "imgs" / "b.png").write_bytes(b)
    (tmp_path / "imgs" / "bad.jpg").write_bytes(truncated_jpeg())
    (tmp_path / "outside.jpg").write_bytes(image_bytes(3))
    lines = [{"image": "a.jpg", "caption": "first", "similarity": 0.5, "url": "http://a"},
             {"image": "b.png", "caption": " second ", "key": "own-key"},
             {"image": "bad.jpg", "caption": "corrupt"},
             {"image": "none.jpg", "caption": "missing"},
             {"image": "../outside.jpg", "caption": "escapes the root"},
             {"image": "a.jpg", "caption": ""},
             {"image": "a.jpg", "caption": "dup", "key": "own-key"}]
    src = tmp_path / "data" / "pairs.jsonl"
    src.parent.mkdir()
    src.write_text("\n".join([json.dumps(x) for x in lines] + ["not json", "[1, 2]"]))
    report = jsonl_to_mds.main(["--kind", "pairs", "--input", str(src), "--image-root", str(tmp_path / "imgs"),
                                "--output", str(tmp_path / "out"), "--no-progress", "--workers", "1"])
    assert report["samples_written"] == 2
    # "../outside.jpg" exists, but outside --image-root: never read
    assert report["rejected"] == {"caption_empty": 1, "duplicate_key": 1, "image_corrupt": 1, "image_missing": 1,
                                  "image_path_invalid": 1, "json_malformed": 2}
    samples = {s["key"]: s for s in read_mds(str(tmp_path / "out"))}
    assert samples["pairs/0"]["image"] == a and samples["pairs/0"]["similarity"] == 0.5
    assert samples["own-key"]["image"] == b and samples["own-key"]["caption"] == "second"
    assert math.isnan(samples["own-key"]["similarity"]) and samples["own-key"]["url"] == ""


def test_interleaved_lines(tmp_path):
    a, b = image_bytes(1), image_bytes(2)
    (tmp_path / "a.jpg").write_bytes(a)
    (tmp_path / "b.jpg").write_bytes(b)
    lines = [{"text": "Intro. <image>The cat sat. <image>Then it slept.", "images": ["a.jpg", "b.jpg"]},
             {"text": "<image>Lost image. <image>Kept.", "images": ["gone.jpg", "b.jpg"], "key": "k1"},
             {"text": "One marker <image> two images", "images": ["a.jpg", "b.jpg"]},
             {"text": "<image>only a missing image", "images": ["gone.jpg"]},
             {"text": "<image>path escape", "images": ["/etc/passwd"]}]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines))
    report = jsonl_to_mds.convert_jsonl([str(src)], str(tmp_path / "out"), kind="interleaved", progress_bar=False)
    assert report["samples_written"] == 2
    assert report["rejected"] == {"image_count_mismatch": 1, "no_usable_image": 2}
    assert report["images_dropped"] == {"image_missing": 2, "image_path_invalid": 1}
    samples = {s["key"]: s for s in read_mds(str(tmp_path / "out"))}
    s = samples["docs/0"]
    assert s["kind"] == "fixed" and s["texts"] == ["Intro. ", "The cat sat. ", "Then it slept."]
    assert [m["matched_text_index"] for m in s["image_meta"]] == [1, 2] and s["images"] == a + b
    s = samples["k1"]
    assert s["texts"] == ["Lost image. ", "Kept."] and s["images"] == b
    assert [m["matched_text_index"] for m in s["image_meta"]] == [1]
