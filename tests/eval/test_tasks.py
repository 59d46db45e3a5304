"""Task files read into examples equal to what the reference's `open_flamingo.eval.eval_datasets` reads from the
same tiny datasets (written here in each task's real format), and bad inputs give one-line errors or counted skips."""

import ast
import json
from pathlib import Path

import pytest
from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES
from open_flamingo.eval.eval_datasets import CaptionDataset, HatefulMemesDataset, ImageNetDataset, VQADataset
from PIL import Image

import recipe.eval.sampling
import recipe.eval.tasks
from recipe.eval.tasks.captioning import cider_references, load_captions
from recipe.eval.tasks.classification import imagenet_classnames, load_hateful_memes, load_imagenet
from recipe.eval.tasks.vqa import load_vqa


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
    with pytest.raises(ValueError, match="unknown dataset 'gqa'; known: ok_vqa, textvqa, vizwiz, vqav2"):
        load_vqa("gqa", "unused.json", str(tmp_path))


def test_missing_file_is_one_line_error(tmp_path):
    missing = str(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="cannot be read") as error:
        load_captions("flickr", missing, "test", str(tmp_path))
    _one_line_error(error, missing)


# ----------------------------------------------------------------------------------------------------------- VQA

_IMAGE_IDS = {"vqav2": [9, 25, 30], "ok_vqa": [9, 25, 30], "textvqa": ["0a1b2c3d", "ff00ee11", "12ab34cd"],
              "vizwiz": ["VizWiz_val_00000000.jpg", "VizWiz_val_00000001.jpg", "VizWiz_val_00000002.jpg"]}
_IMAGE_FILES = {"vqav2": "val2014/COCO_val2014_{:012d}.jpg", "ok_vqa": "val2014/COCO_val2014_{:012d}.jpg",
                "textvqa": "train_images/{}.jpg", "vizwiz": "val/{}"}


def _vqa(tmp_path: Path, dataset: str, annotation_order=(0, 1, 2, 3)) -> tuple[str, str, str]:
    """Four questions on three images (two on the first), their annotations in the order given; images written."""
    image_ids = _IMAGE_IDS[dataset]
    for shade, image_id in enumerate(image_ids):
        _image(tmp_path / _IMAGE_FILES[dataset].format(image_id), 60 * shade)
    on_image = [0, 0, 1, 2]
    questions = [{"image_id": image_ids[on_image[q]], "question": f"Question {q}?", "question_id": 500 + q}
                 for q in range(4)]
    annotations = [{"question_id": 500 + q, "image_id": image_ids[on_image[q]], "question_type": "what",
                    "answers": [{"answer": f"answer {q}.{h}", "answer_id": h + 1} for h in range(10)]}
                   for q in annotation_order]
    image_dir = str(tmp_path / Path(_IMAGE_FILES[dataset]).parent)
    return (image_dir, _json(tmp_path / "questions.json", {"questions": questions}),
            _json(tmp_path / "annotations.json", {"annotations": annotations}))


@pytest.mark.parametrize("dataset", ["vqav2", "ok_vqa", "textvqa", "vizwiz"])
@pytest.mark.parametrize("annotated", [True, False])
def test_vqa_equals_reference(tmp_path, dataset, annotated):
    image_dir, questions, annotations = _vqa(tmp_path, dataset)
    annotations = annotations if annotated else None
    reference = VQADataset(image_dir, questions, annotations, False, dataset)
    loaded = load_vqa(dataset, questions, image_dir, annotations)
    assert loaded.skipped == {} and len(loaded.examples) == len(reference) == 4
    for ours, theirs in zip(loaded.examples, reference):
        assert (ours.question_id, ours.question) == (theirs["question_id"], theirs["question"])
        assert ours.answers == theirs.get("answers")
        assert ours.image_path == theirs["image"].filename and _same_image(theirs["image"], ours.image_path)


def test_vqa_answers_joined_by_question_id(tmp_path):
    image_dir, questions, annotations = _vqa(tmp_path, "vqav2", annotation_order=(2, 0, 3, 1))
    ours = load_vqa("vqav2", questions, image_dir, annotations).examples
    assert [e.answers[0] for e in ours] == ["answer 0.0", "answer 1.0", "answer 2.0", "answer 3.0"]
    # the reference pairs by position, so it gives question 0 the answers of question 2
    assert VQADataset(image_dir, questions, annotations, False, "vqav2")[0]["answers"][0] == "answer 2.0"


def test_vqa_skips_are_counted(tmp_path):
    image_dir, questions, annotations = _vqa(tmp_path, "textvqa", annotation_order=(0, 1, 3))
    (Path(image_dir) / f"{_IMAGE_IDS['textvqa'][2]}.jpg").unlink()  # question 3's image
    loaded = load_vqa("textvqa", questions, image_dir, annotations)
    assert [e.question_id for e in loaded.examples] == [500, 501]
    assert loaded.skipped == {"no_annotation": 1, "missing_image": 1}


@pytest.mark.parametrize("break_file, problem", [
    (lambda q, a: q.write_bytes(b"\xff\xfe binary"), "questions.json: not UTF-8"),
    (lambda q, a: a.write_text(""), "annotations.json: not JSON"),
    (lambda q, a: _json(q, {"questions": [{"image_id": 9, "question_id": 1}]}), r"questions\[0\] lacks 'question'"),
    (lambda q, a: _json(q, {"questions": [7]}), r"questions\[0\] is not a JSON object"),
    (lambda q, a: _json(q, {"questions": [{"image_id": "9", "question": "?", "question_id": 500}]}),
     "has image_id '9', expected int"),
    (lambda q, a: _json(a, {"annotations": [{"question_id": 500, "answers": "yes"}]}),
     r"annotations\[0\].answers is not a list"),
    (lambda q, a: _json(a, {"annotations": [{"question_id": 500, "answers": []}] * 2}),
     r"annotations\[1\] repeats question_id 500"),
])
def test_malformed_vqa_files(tmp_path, break_file, problem):
    image_dir, questions, annotations = _vqa(tmp_path, "vqav2")
    break_file(Path(questions), Path(annotations))
    with pytest.raises(ValueError, match=problem) as error:
        load_vqa("vqav2", questions, image_dir, annotations)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_coco_vqa_needs_a_split_named_image_folder(tmp_path):
    _, questions, _ = _vqa(tmp_path, "ok_vqa")
    with pytest.raises(ValueError, match="must be named one of test2015, train2014, val2014, got"):
        load_vqa("ok_vqa", questions, str(tmp_path / "images"))


# ------------------------------------------------------------------------------------------------ classification

def _hateful_memes(tmp_path: Path) -> tuple[str, str]:
    lines = [json.dumps({"id": 42953 + i, "img": f"img/{42953 + i:05d}.png", "label": i % 2, "text": f"meme {i}"})
             for i in range(4)]
    for i in range(4):
        _image(tmp_path / "img" / f"{42953 + i:05d}.png", 50 * i)
    path = tmp_path / "dev_seen.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path), str(tmp_path / "img")


def test_hateful_memes_equal_reference(tmp_path):
    annotations, image_dir = _hateful_memes(tmp_path)
    reference = HatefulMemesDataset(image_dir, annotations)
    loaded = load_hateful_memes(annotations, image_dir)
    assert loaded.skipped == {} and len(loaded.examples) == len(reference) == 4
    for ours, theirs in zip(loaded.examples, reference):
        assert (ours.id, ours.label, ours.class_name, ours.text) == (
            theirs["id"], theirs["class_id"], theirs["class_name"], theirs["ocr"])
        assert ours.image_path == theirs["image"].filename and _same_image(theirs["image"], ours.image_path)


def test_hateful_memes_missing_image_is_skipped(tmp_path):
    annotations, image_dir = _hateful_memes(tmp_path)
    (Path(image_dir) / "42954.png").unlink()
    loaded = load_hateful_memes(annotations, image_dir)
    assert [e.id for e in loaded.examples] == [42953, 42955, 42956] and loaded.skipped == {"missing_image": 1}


@pytest.mark.parametrize("line, problem", [
    ('{"id": 1, "img": "img/1.png", "label": 1', "line 2 is not JSON"),
    ('{"id": 1, "img": "img/1.png", "text": "t"}', "line 2 lacks 'label'"),
    ('{"id": 1, "img": "img/1.png", "label": 2, "text": "t"}', "record 2 has label 2, expected 0 or 1"),
])
def test_malformed_hateful_memes_file(tmp_path, line, problem):
    annotations, image_dir = _hateful_memes(tmp_path)
    lines = Path(annotations).read_text().splitlines()
    Path(annotations).write_text("\n".join([lines[0], line, *lines[2:]]))
    with pytest.raises(ValueError, match=problem) as error:
        load_hateful_memes(annotations, image_dir)
    _one_line_error(error, annotations)


def test_imagenet_classnames_equal_reference():
    assert list(imagenet_classnames()) == IMAGENET_CLASSNAMES


@pytest.fixture(scope="module")
def imagenet_val(tmp_path_factory) -> Path:
    """1000 class folders, one image each, and in two of them more files: a nested folder, an upper-case
    extension, a file that is not an image."""
    root = tmp_path_factory.mktemp("imagenet") / "val"
    for index in range(1000):
        _image(root / f"n{index:08d}" / f"ILSVRC2012_val_{index:08d}.JPEG", index % 256)
    _image(root / "n00000003" / "extra" / "a.png", 7)
    _image(root / "n00000003" / "B.PNG", 8)
    (root / "n00000999" / "notes.txt").write_text("not an image")
    return root


def test_imagenet_equals_reference(imagenet_val):
    reference = ImageNetDataset(str(imagenet_val))
    loaded = load_imagenet(str(imagenet_val))
    assert loaded.skipped == {} and len(loaded.examples) == len(reference) == 1002
    for ours, (path, label) in zip(loaded.examples, reference.samples):
        assert (ours.image_path, ours.label, ours.class_name) == (path, label, reference.class_id_to_name[label])
    for position in (0, 3, 4, 5, 1001):
        theirs, ours = reference[position], loaded.examples[position]
        assert (ours.id, ours.label, ours.class_name) == (theirs["id"], theirs["class_id"], theirs["class_name"])
        assert _same_image(theirs["image"], ours.image_path)


@pytest.mark.parametrize("tree, problem", [
    ({"n01440764/x.JPEG"}, "1 class folders, ImageNet has 1000"),
    ({"x.JPEG"}, "Couldn't find any class folder"),
    (set(), "No such file or directory"),
])
def test_imagenet_tree_errors(tmp_path, tree, problem):
    for name in tree:
        _image(tmp_path / "val" / name, 1)
    with pytest.raises(ValueError, match=problem) as error:
        load_imagenet(str(tmp_path / "val"))
    _one_line_error(error, tmp_path / "val")


# ----------------------------------------------------------------------------------------------------- packaging

def test_no_run_time_dependency_on_the_reference():
    modules = [Path(recipe.eval.sampling.__file__), *Path(recipe.eval.tasks.__file__).parent.glob("*.py")]
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "open_flamingo" for name in names), module
