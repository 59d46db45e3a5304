import json

import pytest

from convert import mmc4_to_mds
from tests.conversion.fixtures import (
    b64, big_png, image_bytes, mmc4_doc, mmc4_image, read_mds, truncated_jpeg, write_jsonl_zip, write_tar,
)


@pytest.fixture
def mmc4_release(tmp_path):
    """Two MMC4 document shards (.jsonl.zip, images in the sharded layout; plain .jsonl, flat layout).

    Returns (inputs, image dir, {key: expected document}, expected rejections, expected dropped images)."""
    images = tmp_path / "images"
    (images / "0").mkdir(parents=True)
    files = {}

    def img(shard_dir, name, data):
        (shard_dir / name).write_bytes(data)
        files[name] = data
        return name

    img(images / "0", "a.jpg", image_bytes(1))
    img(images / "0", "b.png", image_bytes(2, "PNG"))
    img(images / "0", "c.jpg", image_bytes(3))
    img(images / "0", "trunc.jpg", truncated_jpeg())
    img(images / "0", "empty.jpg", b"")
    img(images / "0", "html.jpg", b"<html>404</html>")
    img(images / "0", "bomb.png", big_png())
    img(images, "flat.jpg", image_bytes(4))
    (tmp_path / "secret.jpg").write_bytes(image_bytes(5))  # reachable only through "../"

    good_doc = mmc4_doc(3, [mmc4_image("a.jpg", 2), mmc4_image("gone.jpg", 1), mmc4_image("b.png", 0)], "u0")
    partly_bad = mmc4_doc(2, [mmc4_image(n, 1) for n in ("trunc.jpg", "empty.jpg", "html.jpg", "bomb.png",
                                                          "../secret.jpg", "c.jpg")], "u1")
    all_missing = mmc4_doc(2, [mmc4_image("gone1.jpg"), mmc4_image("gone2.jpg")], "u2")
    bad_shape = mmc4_doc(3, [mmc4_image("a.jpg")], "u3")
    bad_shape["similarity_matrix"] = [[0.1, 0.2]]
    empty_text = mmc4_doc(1, [mmc4_image("a.jpg")], "u4")
    empty_text["text_list"] = []
    empty_text["similarity_matrix"] = [[]]
    bad_index = mmc4_doc(2, [mmc4_image("a.jpg", 7)], "u5")
    lines = [json.dumps(good_doc), "{not json", json.dumps(partly_bad), json.dumps(all_missing),
             json.dumps(bad_shape), json.dumps(empty_text), json.dumps(bad_index),
             '{"url": "u6", "text_list": ["bad \\ud800 surrogate"], "image_info": [], "similarity_matrix": []}']
    shard0 = write_jsonl_zip(str(tmp_path / "docs_no_face_shard_0_v2.jsonl.zip"), lines)
    flat_doc = mmc4_doc(2, [mmc4_image("flat.jpg", 1)], "u7")
    shard1 = tmp_path / "docs_no_face_shard_1_v2.jsonl"
    shard1.write_text(json.dumps(flat_doc) + "\n\n")

    expected_docs = {
        "docs_no_face_shard_0_v2/0": (good_doc, [0, 2]),
        "docs_no_face_shard_0_v2/2": (partly_bad, [5]),
        "docs_no_face_shard_1_v2/0": (flat_doc, [0]),
    }
    rejected = {"json_malformed": 1, "no_usable_image": 2, "similarity_shape_mismatch": 1, "text_list_empty": 1,
                "bad_utf8_text": 1}
    dropped = {"image_missing": 3, "image_corrupt": 1, "image_empty": 1, "image_not_an_image": 1,
               "image_too_large": 1, "image_name_invalid": 1, "image_meta_invalid": 1}
    return [shard0, str(shard1)], str(images), files, expected_docs, rejected, dropped


def check_documents(samples, files, expected_docs, image_key="image_name", data_of=None):
    assert sorted(s["key"] for s in samples) == sorted(expected_docs)
    for s in samples:
        doc, kept = expected_docs[s["key"]]
        assert s["kind"] == "mmc4"
        assert s["url"] == doc["url"]
        assert s["texts"] == doc["text_list"]
        infos = [doc["image_info"][i] for i in kept]
        assert [m["image_name"] for m in s["image_meta"]] == [i["image_name"] for i in infos]
        assert [m["matched_text_index"] for m in s["image_meta"]] == [i["matched_text_index"] for i in infos]
        assert [m["raw_url"] for m in s["image_meta"]] == [i["raw_url"] for i in infos]
        assert s["similarity"] == [doc["similarity_matrix"][i] for i in kept]
        assert len(s["similarity"]) == len(s["image_sizes"]) and all(len(r) == len(s["texts"]) for r in s["similarity"])
        originals = [files[i["image_name"]] for i in infos]
        assert s["image_sizes"] == [len(b) for b in originals]
        assert s["images"] == b"".join(originals)  # byte-exact, concatenated in image order


def test_mmc4_jsonl_zip_and_image_folder(mmc4_release, tmp_path):
    inputs, image_dir, files, expected_docs, rejected, dropped = mmc4_release
    out = tmp_path / "out"
    report = mmc4_to_mds.convert_mmc4(inputs, str(out), image_dir=image_dir, workers=2, max_image_pixels=100 * 100,
                                      progress_bar=False)
    assert report["samples_written"] == 3
    assert report["rejected"] == rejected
    assert report["images_dropped"] == dropped
    assert report["records_read"] == 3 + sum(rejected.values())
    check_documents(read_mds(str(out)), files, expected_docs)


def test_flat_layout_only_ignores_shard_folders(mmc4_release, tmp_path):
    inputs, image_dir, files, expected_docs, rejected, dropped = mmc4_release
    report = mmc4_to_mds.main(["--input", *inputs, "--image-dir", image_dir, "--image-layout", "flat",
                               "--output", str(tmp_path / "out"), "--no-progress", "--workers", "1",
                               "--allow-missing-images", "--accept-input-errors"])
    assert report["samples_written"] == 1  # only the flat-layout image is found


def test_openflamingo_mmc4_tars(tmp_path):
    """OpenFlamingo's convert_mmc4_to_wds.py output: base64 images inside the document JSON, including the
    Python-bytes-repr form of OpenFlamingo#198."""
    files = {"x.jpg": image_bytes(10), "y.jpg": image_bytes(11), "z.jpg": image_bytes(12)}
    doc_plain = mmc4_doc(2, [mmc4_image("x.jpg", 0, b64(files["x.jpg"])), mmc4_image("y.jpg", 1)], "w0")
    doc_repr = mmc4_doc(3, [mmc4_image("z.jpg", 2, "b'" + b64(files["z.jpg"]) + "'"),
                            mmc4_image("w.jpg", 2, "!!not base64!!")], "w1")
    doc_gpt = {"is_gpt": True, "example": "x", "image_map": {}}
    members = [("k0.json", json.dumps(doc_plain).encode()), ("k1.json", json.dumps(doc_repr).encode()),
               ("k2.json", json.dumps(doc_gpt).encode()), ("k3.json", b"\xff{"), ("k4.txt", b"no json")]
    tar = write_tar(str(tmp_path / "000000000.tar"), members)
    (tmp_path / "000000001.tar").write_bytes(b"")  # a failed download
    (tmp_path / "000000002.tar").write_bytes(b"\x00" * 7 + b"garbage")
    out = tmp_path / "out"
    report = mmc4_to_mds.convert_mmc4([str(tmp_path / "*.tar")], str(out), progress_bar=False)
    assert report["samples_written"] == 2
    assert report["input_errors"] == {"input_unreadable": 2}
    assert report["rejected"] == {"bad_utf8_text": 1, "chatgpt_document": 1, "json_missing": 1}
    assert report["images_dropped"] == {"image_missing": 1, "image_base64_invalid": 1}
    check_documents(read_mds(str(out)), files, {"k0": (doc_plain, [0]), "k1": (doc_repr, [0])})
