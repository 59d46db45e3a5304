"""Evaluation benchmark files in their real formats over images made up offline: COCO's Karpathy split file and
VQAv2 question / annotation files, sharing their images as the real sets do; Hateful Memes' JSON lines and image
folder; ImageNet's class-folder tree."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass
class Example:
    image: bytes  # an encoded image file (JPEG)
    captions: list[str]
    question: str
    answers: list[str]  # the annotators' answers (VQAv2 has 10)


def write_coco_vqav2(root: str, examples: list[Example], n_train: int) -> tuple[dict, list[str]]:
    """The first `n_train` examples form the train split (few-shot demonstrations: `train2014/`, Karpathy
    `train`), the rest the test split (`val2014/`, Karpathy `test`). Returns (the `datasets:` section of
    yamls/eval.yaml for `coco` and `vqav2`, the image paths in example order)."""
    images, paths = [], []
    questions: dict[str, list] = {"train": [], "test": []}
    annotations: dict[str, list] = {"train": [], "test": []}
    for i, ex in enumerate(examples):
        part, folder = ("train", "train2014") if i < n_train else ("test", "val2014")
        name = f"COCO_{folder}_{i:012d}.jpg"
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        paths.append(os.path.join(root, folder, name))
        with open(paths[-1], "wb") as f:
            f.write(ex.image)
        images.append({"filepath": folder, "filename": name, "cocoid": i, "split": part,
                       "sentences": [{"raw": c} for c in ex.captions]})
        question_id = 100 + i  # unlike image ids, so that a reader mixing them up fails
        questions[part].append({"image_id": i, "question": ex.question, "question_id": question_id})
        annotations[part].append({"image_id": i, "question_id": question_id,
                                  "answers": [{"answer": a} for a in ex.answers]})
    with open(os.path.join(root, "dataset_coco.json"), "w") as f:
        json.dump({"images": images}, f)
    vqa = {}
    for part, folder in (("train", "train2014"), ("test", "val2014")):
        # Annotations in reverse question order: readers must join them to questions by id, as for the real files.
        for kind, rows in (("questions", questions[part]), ("annotations", annotations[part][::-1])):
            vqa[f"{part}_{kind}"] = os.path.join(root, f"{part}_{kind}.json")
            with open(vqa[f"{part}_{kind}"], "w") as f:
                json.dump({kind: rows}, f)
        vqa[f"{part}_image_dir"] = os.path.join(root, folder)
    coco = {"annotations": os.path.join(root, "dataset_coco.json"), "image_dir": os.path.join(root, "train2014"),
            "val_image_dir": os.path.join(root, "val2014")}
    return {"coco": coco, "vqav2": vqa}, paths


def write_hateful_memes(root: str, memes: list[tuple[bytes, str, int]], n_train: int) -> dict:
    """Memes (PNG or JPEG bytes, text, label 0 / 1) as the challenge ships them: `img/<id>.png`, records naming
    `img/<id>.png`; the first `n_train` in `train.jsonl`, the rest in `dev_seen.jsonl`. Returns the
    `datasets.hateful_memes` section of yamls/eval.yaml."""
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "dev_seen": []}
    for i, (image, text, label) in enumerate(memes):
        meme_id = 10000 + i
        with open(os.path.join(root, "img", f"{meme_id}.png"), "wb") as f:
            f.write(image)
        lines["train" if i < n_train else "dev_seen"].append(
            json.dumps({"id": meme_id, "img": f"img/{meme_id}.png", "label": label, "text": text}))
    for part, rows in lines.items():
        with open(os.path.join(root, f"{part}.jsonl"), "w") as f:
            f.write("".join(row + "\n" for row in rows))
    return {"train_annotations": os.path.join(root, "train.jsonl"),
            "test_annotations": os.path.join(root, "dev_seen.jsonl"), "image_dir": os.path.join(root, "img")}


def write_imagenet(root: str, splits: dict[str, list[tuple[int, bytes]]]) -> dict:
    """Images (class index, JPEG bytes) per split ("train", "val") as `<split>/<class folder>/<name>.JPEG`, the
    class folders named so that their sorted order is the class order (as ImageNet's WordNet ids are). Returns
    the `datasets.imagenet` section of yamls/eval.yaml."""
    for split, images in splits.items():
        for i, (label, image) in enumerate(images):
            folder = os.path.join(root, split, f"n{label:08d}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"ILSVRC2012_{split}_{i:08d}.JPEG"), "wb") as f:
                f.write(image)
    return {"root": root}
