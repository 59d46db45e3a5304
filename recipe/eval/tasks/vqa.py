"""Visual question answering sets in the VQA file format: VQAv2, OK-VQA, TextVQA, VizWiz.

Matches OpenFlamingo's `VQADataset` (`open_flamingo/eval/eval_datasets.py`): questions in file order, each
with the `answer` strings of its annotation in annotation order, and the image path of `get_img_path`:
`COCO_<split>_<image_id:012d>.jpg` for VQAv2 and OK-VQA, where the split is the image folder's own name
(train2014, val2014 or test2015); `<image_id>.jpg` for TextVQA; `<image_id>` (already a file name) for VizWiz.

Deliberate differences: answers are joined to questions by `question_id` (the reference pairs the i-th
question with the i-th annotation, which is wrong when the two files are ordered differently); with an
annotation file, a question that has no annotation is skipped and counted as `no_annotation`; questions
whose image file is missing are skipped and counted.
"""

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recipe.eval.tasks.loading import Loaded, check_name, field_of_each, keep_with_images, read_json_list

NO_ANNOTATION = "no_annotation"
DATASETS = ("ok_vqa", "textvqa", "vizwiz", "vqav2")
_COCO_IMAGE_FOLDERS = ("test2015", "train2014", "val2014")
_QUESTION_KEYS = ("image_id", "question", "question_id")


@dataclass
class VQAExample:
    question_id: int | str
    image_path: str
    question: str
    answers: list[str] | None  # None when the split has no annotation file (test-dev)


def load_vqa(dataset: str, questions_path: str, image_dir: str,
             annotations_path: str | None = None) -> Loaded[VQAExample]:
    """The questions of one split, with their human answers when an annotation file is given."""
    check_name("dataset", dataset, DATASETS)
    image_path = _image_path_rule(dataset, image_dir)
    answers = None if annotations_path is None else _answers_by_question(annotations_path)
    candidates, skipped = [], Counter()
    for i, question in enumerate(read_json_list(questions_path, "questions", _QUESTION_KEYS)):
        question_id = question["question_id"]
        if answers is not None and question_id not in answers:
            skipped[NO_ANNOTATION] += 1
            continue
        path = image_path(question["image_id"], f"{questions_path}: questions[{i}]")
        candidates.append(VQAExample(question_id, path, question["question"],
                                     None if answers is None else answers[question_id]))
    return keep_with_images(candidates, skipped)


def _image_path_rule(dataset: str, image_dir: str) -> Callable[[Any, str], str]:
    """How an image id becomes a path; the second argument locates the question in errors."""
    if dataset in ("vqav2", "ok_vqa"):
        # the reference takes the COCO split from the folder's name, as the file names embed it
        split = image_dir.strip("/").split("/")[-1]
        if split not in _COCO_IMAGE_FOLDERS:
            raise ValueError(f"{dataset} image folder must be named one of {', '.join(_COCO_IMAGE_FOLDERS)}, "
                             f"got {image_dir!r}")
        return lambda image_id, where: os.path.join(
            image_dir, f"COCO_{split}_{_typed(image_id, int, where):012d}.jpg")
    if dataset == "textvqa":
        return lambda image_id, where: os.path.join(image_dir, f"{image_id}.jpg")
    return lambda image_id, where: os.path.join(image_dir, _typed(image_id, str, where))


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where} has image_id {value!r}, expected {kind.__name__}")
    return value


def _answers_by_question(path: str) -> dict[int | str, list[str]]:
    answers = {}
    for i, annotation in enumerate(read_json_list(path, "annotations", ("question_id", "answers"))):
        question_id = annotation["question_id"]
        if question_id in answers:
            raise ValueError(f"{path}: annotations[{i}] repeats question_id {question_id!r}")
        answers[question_id] = field_of_each(path, f"annotations[{i}].answers", annotation["answers"], "answer")
    return answers
