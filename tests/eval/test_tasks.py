"""Task files read into examples equal to what the reference's `open_flamingo.eval.eval_datasets` reads from the
same tiny datasets (written here in each task's real format), and bad inputs give one-line errors or counted skips."""

import ast
import json
from pathlib import Path

import pytest
from open_flamingo.eval.eval_datasets import CaptionDataset
from PIL import Image

import recipe.eval.sampling
import recipe.eval.tasks
from recipe.eval.tasks.captioning import cider_references, load_captions


def _image(path: Path, shade: int) -> None:
    """A 2x2 image whose pixels say which one it is; JPEG or PNG by its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2), (shade, 255 - shade, shade // 2)).save(path, format="PNG" if path.suffix == ".png"
                                                                        else "JPEG")


def _json(path: Path, document) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def _same_image(reference_image: Image.Image, path: str) -> bool:
    with Image.open(path) as ours:
        return reference_image.convert("RGB").tobytes() == ours.convert("RGB").tobytes()


def _one_line_error(error: pytest.ExceptionInfo, path: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path))


# ---------------------------------------------------------------------------------------------------- captioning

def _karpathy(tmp_path: Path, dataset: str) -> str:
    """A Karpathy split file of 6 images in mixed split order, COCO images in both folders; images written."""
    splits = ["test", "train", "restval", "test", "val", "train"]
    records = []
    for i, split in enumerate(splits):
        sentences = [{"raw": f"Image {i}, caption {j}.", "tokens": []} for j in range(5)]
        if dataset == "coco":
            folder = "train2014" if i in (1, 3, 5) else "val2014"  # image 3: a test image in train2014
            name = f"COCO_{folder}_{100 + i:012d}.jpg"
            records.append({"filepath": folder, "filename": name, "split": split, "sentences": sentences,
                            "cocoid": 100 + i, "imgid": i})
            _image(tmp_path / folder / name, 10 * i)
        else:
            name = f"{1000 + i}.jpg"
            records.append({"filename": name, "split": split, "sentences": sentences, "imgid": i})
            _image(tmp_path / "flickr30k-images" / name, 10 * i)
    return _json(tmp_path / f"dataset_{dataset}.json", {"images": records, "dataset": dataset})


def _caption_dirs(tmp_path: Path, dataset: str) -> dict[str, str | None]:
    if dataset == "coco":
        return {"image_dir": str(tmp_path / "train2014"), "val_image_dir": str(tmp_path / "val2014")}
    return {"image_dir": str(tmp_path / "flickr30k-images"), "val_image_dir": None}


@pytest.mark.parametrize("dataset", ["coco", "flickr"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_captions_equal_reference(tmp_path, dataset, split):
    annotations = _karpathy(tmp_path, dataset)
    dirs = _caption_dirs(tmp_path, dataset)
    reference = CaptionDataset(dirs["image_dir"], annotations, split == "train", dataset, dirs["val_image_dir"])
    loaded = load_captions(dataset, annotations, split, **dirs)
    assert loaded.skipped == {} and len(loaded.examples) == len(reference) == 2
    for ours, theirs in zip(loaded.examples, reference):
        assert ours.image_id == theirs["image_id"]
        assert ours.captions[0] == theirs["caption"] and len(ours.captions) == 5
        assert ours.image_path == theirs["image"].filename and _same_image(theirs["image"], ours.image_path)


def test_caption_ids_and_splits(tmp_path):
    annotations = _karpathy(tmp_path, "flickr")
    dirs = _caption_dirs(tmp_path, "flickr")
    assert [e.image_id for e in load_captions("flickr", annotations, "val", **dirs).examples] == ["1004"]
    with_restval = load_captions("flickr", annotations, "train", include_restval=True, **dirs)
    assert [e.image_id for e in with_restval.examples] == ["1001", "1002", "1005"]
    with pytest.raises(ValueError, match="include_restval"):
        load_captions("flickr", annotations, "test", include_restval=True, **dirs)


def test_cider_references_keep_every_caption(tmp_path):
    annotations = _karpathy(tmp_path, "coco")
    examples = load_captions("coco", annotations, "test", **_caption_dirs(tmp_path, "coco")).examples
    assert cider_references(examples) == {100 + i: [f"Image {i}, caption {j}." for j in range(5)] for i in (0, 3)}


def test_missing_caption_image_is_skipped(tmp_path):
    annotations = _karpathy(tmp_path, "coco")
    (tmp_path / "val2014" / f"COCO_val2014_{100:012d}.jpg").unlink()
    loaded = load_captions("coco", annotations, "test", **_caption_dirs(tmp_path, "coco"))
    assert [e.image_id for e in loaded.examples] == [103] and loaded.skipped == {"missing_image": 1}


@pytest.mark.parametrize("break_file, problem", [
    (lambda path, doc: path.write_text("{not json"), "not JSON"),
    (lambda path, doc: _json(path, {"pictures": doc["images"]}), "list under 'images'"),
    (lambda path, doc: _json(path, {"images": [{k: v for k, v in r.items() if k != "cocoid"} for r in doc["images"]]}),
     r"images\[0\] lacks 'cocoid'"),
    (lambda path, doc: _json(path, {"images": [{**r, "sentences": [{"text": "x"}]} for r in doc["images"]]}),
     r"images\[0\].sentences\[0\] lacks 'raw'"),
    (lambda path, doc: _json(path, {"images": [{**r, "sentences": []} for r in doc["images"]]}), "no sentences"),
])
def test_malformed_karpathy_file(tmp_path, break_file, problem):
    annotations = _karpathy(tmp_path, "coco")
    break_file(Path(annotations), json.loads(Path(annotations).read_text()))
    with pytest.raises(ValueError, match=problem) as error:
        load_captions("coco", annotations, "test", **_caption_dirs(tmp_path, "coco"))
    _one_line_error(error, annotations)


def test_unknown_names_list_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nocaps'; known: coco, flickr"):
        load_captions("nocaps", "unused.json", "test", str(tmp_path))
    with pytest.raises(ValueError, match="unknown split 'dev'; known: test, train, val"):
        load_captions("flickr", "unused.json", "dev", str(tmp_path))


def test_missing_file_is_one_line_error(tmp_path):
    missing = str(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="cannot be read") as error:
        load_captions("flickr", missing, "test", str(tmp_path))
    _one_line_error(error, missing)


# ----------------------------------------------------------------------------------------------------- packaging

def test_no_run_time_dependency_on_the_reference():
    modules = [Path(recipe.eval.sampling.__file__), *Path(recipe.eval.tasks.__file__).parent.glob("*.py")]
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "open_flamingo" for name in names), module
