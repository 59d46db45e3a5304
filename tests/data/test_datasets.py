"""The pairs and interleaved datasets on real MDS shards, checked against the reference's own preprocessing
(open_flamingo 2.0.1, the v2 release: per-image argmax assignment) where the semantics are shared."""

import base64
import io
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mds_fixtures import fixed_row, jpeg, mmc4_row, pair_rows
from recipe.data.sources import SourceConfig, build_source_dataset
from recipe.offline.mds import write_interleaved, write_pairs
from recipe.tokens import IGNORE_INDEX


@pytest.fixture(scope="module")
def reference_data():
    import open_flamingo
    sys.path.insert(0, os.path.join(os.path.dirname(open_flamingo.__file__), "train"))
    import data  # the reference's data.py (imports its sibling data_utils as a top-level module)
    return data


def dataset(path, tok, tf, kind="interleaved", **fields):
    cfg = SourceConfig(kind=kind, batch_size=2, streams={"s": {"remote": str(path)}}, shuffle=False, **fields)
    return build_source_dataset("t", cfg, tok, tf, seed=0, cache_root="unused", max_substitutions=8)


def big_jpeg(seed):
    """A JPEG over the reference's 11 kB floor."""
    data = jpeg(seed, size=160)
    assert len(data) > 11_000
    return data


def test_pairs_match_reference_text_and_mask_unusable_images(tmp_path, flamingo_tokenizer, image_transform,
                                                             reference_data):
    rows = pair_rows(8, broken=(3,))
    rows[1]["caption"] = " ".join(["red"] * 60)  # longer than 32 tokens: truncated
    ds = dataset(write_pairs(str(tmp_path / "p"), rows), flamingo_tokenizer, image_transform, "pairs")
    samples = [ds[i] for i in range(8)]
    batch = ds.collate(samples)

    ok = [i for i in range(8) if i != 3]
    ref_ids, ref_mask = reference_data.preprocess_laion_text([rows[i]["caption"] for i in ok], flamingo_tokenizer)
    assert torch.equal(batch["input_ids"][ok], ref_ids) and torch.equal(batch["attention_mask"][ok], ref_mask)
    # the reference's labels: a copy of input_ids with pad and <image> -> -100
    labels = ref_ids.clone()
    labels[ref_ids == flamingo_tokenizer.pad_token_id] = IGNORE_INDEX
    labels[ref_ids == flamingo_tokenizer.convert_tokens_to_ids("<image>")] = IGNORE_INDEX
    assert torch.equal(batch["labels"][ok], labels)
    assert batch["input_ids"].shape[1] == 32 and batch["images"].shape == (8, 1, 3, 32, 32)

    # the undecodable image at index 3 is replaced by sample 4, and counted
    assert batch["sample_idx"].tolist() == [0, 1, 2, 4, 4, 5, 6, 7]
    assert batch["rejected"][3].tolist() == [0, 1] and batch["rejected"].sum() == 1
    expected = image_transform(Image.open(io.BytesIO(rows[0]["image"])).convert("RGB"))
    assert torch.equal(batch["images"][0, 0], expected)


def test_pairs_pad_to_max_tokens_gives_fixed_shapes(tmp_path, flamingo_tokenizer, image_transform):
    rows = pair_rows(4)
    path = write_pairs(str(tmp_path / "p"), rows)
    longest = dataset(path, flamingo_tokenizer, image_transform, "pairs", max_tokens=40)
    fixed = dataset(path, flamingo_tokenizer, image_transform, "pairs", max_tokens=40, pad_to_max_tokens=True)
    a, b = (ds.collate([ds[i] for i in range(4)]) for ds in (longest, fixed))
    width = a["input_ids"].shape[1]
    assert width < 40 and b["input_ids"].shape == (4, 40)
    # the same sequences, only more right padding (masked, no targets)
    for key, pad in (("input_ids", flamingo_tokenizer.pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
        assert torch.equal(b[key][:, :width], a[key]) and (b[key][:, width:] == pad).all()


def reference_doc(row):
    info = {"text_list": row["texts"], "similarity_matrix": row["similarity"], "image_info": []}
    ends = np.cumsum(row["image_sizes"])
    for k, size in enumerate(row["image_sizes"]):
        raw = row["images"][ends[k] - size:ends[k]]
        info["image_info"].append({"image_base64": base64.b64encode(raw).decode()})
    return (json.dumps(info),)


def with_big_images(row, seed):
    imgs = [big_jpeg(seed * 10 + k) for k in range(len(row["image_sizes"]))]
    return dict(row, images=b"".join(imgs), image_sizes=[len(b) for b in imgs])


def test_mmc4_matches_reference_tokens_and_fixes_image_order(tmp_path, flamingo_tokenizer, image_transform,
                                                             reference_data):
    rows = [
        with_big_images(mmc4_row("mono", 5, [0, 2, 4], seed=1), 1),
        with_big_images(mmc4_row("swap", 5, [3, 1], seed=2), 2),  # image 0 matches a later sentence than image 1
        with_big_images(mmc4_row("low", 4, [0, 1], seed=3, sim_hi=0.2), 3),  # below 0.24: no image survives
    ]
    ds = dataset(write_interleaved(str(tmp_path / "m"), rows), flamingo_tokenizer, image_transform,
                 assignment="argmax", max_tokens=64)
    for i in (0, 1):
        ours = ds[i]
        torch.manual_seed(0)  # the reference flips the image stack with p=0.5; compare up to that flip
        ref_images, (ref_ids, ref_mask) = reference_data.preprocess_interleaved(
            reference_doc(rows[i]), flamingo_tokenizer, image_transform, 0.24, 1, 6, max_tokens=64)
        assert ours["input_ids"] == ref_ids[0].tolist() and ours["attention_mask"] == ref_mask[0].tolist()
        n = ours["num_images"]
        assert n == len(rows[i]["image_meta"])
        # reference stacks images in image-index order; ours in <image> order
        expected_order = [0, 1, 2] if i == 0 else [1, 0]
        assert ours["image_order"] == expected_order
        for slot, k in enumerate(expected_order):
            assert (torch.equal(ours["images"][slot], ref_images[k])
                    or torch.equal(ours["images"][slot], ref_images[k].flip(-1)))
        assert not ours["images"][n:].any()
    with pytest.raises(ValueError, match="No images"):
        reference_data.preprocess_interleaved(reference_doc(rows[2]), flamingo_tokenizer, image_transform,
                                              0.24, 1, 6, max_tokens=64)
    assert ds[2]["sample_idx"] == 0 and ds[2]["rejected"][ds.REASONS.index("below_threshold")] == 1


def test_interleaved_labels_images_and_truncation(tmp_path, flamingo_tokenizer, image_transform):
    long_sentences = mmc4_row("long", 8, [0, 3, 7], seed=4)
    ds = dataset(write_interleaved(str(tmp_path / "m"), [long_sentences]), flamingo_tokenizer,
                 image_transform, max_tokens=24, min_image_bytes=0)
    s = ds[0]
    tok = flamingo_tokenizer
    image_id, eoc_id = tok.convert_tokens_to_ids("<image>"), tok.convert_tokens_to_ids("<|endofchunk|>")
    n_tokens = s["input_ids"].count(image_id)
    assert len(s["input_ids"]) == 24 and n_tokens == s["num_images"] < 3  # the last image was truncated away
    assert s["image_order"] == [0, 1][:n_tokens] and not s["images"][n_tokens:].any()
    first = s["input_ids"].index(image_id)
    assert all(t == IGNORE_INDEX for t in s["labels"][:first + 1])
    assert all(s["labels"][j] == eoc_id for j, t in enumerate(s["input_ids"]) if t == eoc_id)


def test_rejections_are_counted_and_bounded(tmp_path, flamingo_tokenizer, image_transform):
    rows = [mmc4_row(f"d{i}", 4, [0, 2], seed=i) for i in range(4)]
    path = write_interleaved(str(tmp_path / "m"), rows)
    small = dataset(path, flamingo_tokenizer, image_transform, min_image_bytes=10**9)
    with pytest.raises(RuntimeError, match="small_images"):
        small[0]
    rows[1] = dict(rows[1], images=b"x" * len(rows[1]["images"]))
    broken = dataset(write_interleaved(str(tmp_path / "b"), rows), flamingo_tokenizer,
                     image_transform, min_image_bytes=0)
    s = broken[1]
    assert s["sample_idx"] == 2 and s["rejected"][broken.REASONS.index("undecodable_image")] == 1


def test_single_image_drop_is_deterministic_per_seed_epoch_and_index(tmp_path, flamingo_tokenizer,
                                                                     image_transform):
    rows = [mmc4_row(f"d{i}", 3, [1], seed=i) for i in range(40)]
    ds = dataset(write_interleaved(str(tmp_path / "m"), rows), flamingo_tokenizer, image_transform,
                 min_image_bytes=0)

    def kept():
        return [ds[i]["sample_idx"] == i for i in range(40)]

    epoch0 = kept()
    assert kept() == epoch0 and 8 < sum(epoch0) < 32  # about half survive
    ds.current_epoch = 1
    assert kept() != epoch0
    ds.current_epoch, ds.seed = 0, 1
    assert kept() != epoch0


def test_fixed_documents_skip_filters_and_keep_max_images(tmp_path, flamingo_tokenizer, image_transform):
    rows = [fixed_row("one", ["A red square. ", "Done."], [1], seed=1),
            fixed_row("many", [f"s{i}. " for i in range(8)], list(range(8)), seed=2)]
    rows[0]["similarity"] = []
    ds = dataset(write_interleaved(str(tmp_path / "f"), rows), flamingo_tokenizer, image_transform,
                 max_images=6, single_image_drop_prob=1.0, min_image_bytes=10**9)
    one, many = ds[0], ds[1]
    assert one["sample_idx"] == 0 and one["num_images"] == 1  # no single-image drop, no byte floor for fixed
    assert many["num_images"] == 6 and many["image_order"] == list(range(6))
    text = flamingo_tokenizer.decode([t for t, m in zip(many["input_ids"], many["attention_mask"]) if m])
    assert text.count("<image>") == 6 and "s6." not in text


def test_unknown_document_kind_is_a_clear_error(tmp_path, flamingo_tokenizer, image_transform):
    row = dict(mmc4_row("k", 3, [0], seed=1), kind="video")
    ds = dataset(write_interleaved(str(tmp_path / "k"), [row]), flamingo_tokenizer, image_transform)
    with pytest.raises(ValueError, match="unknown kind 'video'"):
        ds[0]


def test_tokenizer_without_flamingo_tokens_is_rejected(mds_root, tokenizer, image_transform):
    with pytest.raises(ValueError, match="tokenizer needs"):
        dataset(os.path.join(mds_root, "laion"), tokenizer, image_transform, "pairs")
