import json

from convert import chatgpt_to_mds
from tests.conversion.fixtures import chatgpt_seq, image_bytes, read_mds, truncated_jpeg, write_tar


def test_chatgpt_json_jsonl_and_tar(tmp_path):
    i1, i2, i3 = image_bytes(1), image_bytes(2, "PNG"), image_bytes(3)
    two = chatgpt_seq({"_!_IMAGE1_!_": i1, "_!_IMAGE2_!_": i2},
                      "_!_IMAGE1_!_A cat sits. Then _!_IMAGE2_!_ a dog runs.")
    one_bad = chatgpt_seq({"_!_IMAGE1_!_": i3, "_!_IMAGE2_!_": truncated_jpeg(), "_!_IMAGE3_!_": i1},
                          "Intro. _!_IMAGE1_!_ first. _!_IMAGE2_!_ second. _!_IMAGE3_!_ third.")
    unmapped = chatgpt_seq({}, "Only text _!_IMAGE1_!_ here.")
    no_image = chatgpt_seq({}, "No images at all.")
    (tmp_path / "seqs.json").write_text(json.dumps([two, one_bad]))
    (tmp_path / "more.jsonl").write_text("\n".join([json.dumps(unmapped), "[broken", json.dumps(no_image),
                                                    json.dumps({**two, "example": "  "})]) + "\n")
    write_tar(str(tmp_path / "000.tar"), [("s0.json", json.dumps(two).encode()),
                                          ("s1.json", json.dumps({**two, "image_map": []}).encode())])
    out = tmp_path / "out"
    report = chatgpt_to_mds.main(["--input", str(tmp_path / "seqs.json"), str(tmp_path / "{more.jsonl,000.tar}"),
                                  "--output", str(out), "--no-progress", "--workers", "2"])
    assert report["samples_written"] == 2
    # A sequence with an unusable image (one_bad) or a placeholder with no image (unmapped) is rejected whole:
    # its text speaks of every image.
    assert report["rejected"] == {"image_corrupt": 1, "image_map_invalid": 1, "json_malformed": 1,
                                  "missing_image_in_sample": 1, "no_usable_image": 1, "text_empty": 1}
    assert report["images_dropped"] == {}
    samples = {s["key"]: s for s in read_mds(str(out))}
    assert sorted(samples) == ["s0", "seqs/0"]
    for key in ("s0", "seqs/0"):
        s = samples[key]
        assert s["kind"] == "fixed" and s["similarity"] == []
        assert s["texts"] == ["", "A cat sits. Then ", " a dog runs."]
        assert [m["matched_text_index"] for m in s["image_meta"]] == [1, 2]
        assert s["images"] == i1 + i2 and s["image_sizes"] == [len(i1), len(i2)]
