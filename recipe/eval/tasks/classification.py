"""Image classification sets: Hateful Memes (JSON lines) and ImageNet (one folder per class).

Matches OpenFlamingo's `HatefulMemesDataset` and `ImageNetDataset` (`open_flamingo/eval/eval_datasets.py`).
Hateful Memes: records in file order, the image at `<image dir>/<last part of img>`, the meme's text, label 0
or 1 named "no" or "yes". ImageNet: torchvision's `ImageFolder` listing (class folders sorted by name, a class's
index is its position; image files by extension, walked in sorted order), the example id its position in that
listing, the class name the reference's `IMAGENET_CLASSNAMES` entry, kept here in `imagenet_classnames.txt` so
that nothing depends on open_flamingo at run time.

Deliberate differences: a Hateful Memes record whose image file is missing is skipped and counted; an ImageNet
tree without exactly 1000 class folders is an error (the reference would name its classes by position, wrongly).
"""

import os
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from recipe.eval.tasks.loading import Loaded, keep_with_images, read_jsonl

HATEFUL_MEMES_CLASSNAMES = ("no", "yes")
_HATEFUL_MEMES_KEYS = ("id", "img", "label", "text")


@dataclass
class ClassificationExample:
    id: int | str
    image_path: str
    label: int
    class_name: str
    text: str | None  # the meme's text; None for ImageNet


@cache
def imagenet_classnames() -> tuple[str, ...]:
    """The 1000 ImageNet class names by class index, as the reference words them."""
    text = files("recipe.eval.tasks").joinpath("imagenet_classnames.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def load_hateful_memes(annotations_path: str, image_dir: str) -> Loaded[ClassificationExample]:
    """The memes of one annotation file (train.jsonl, dev_seen.jsonl, test_seen.jsonl, ...)."""
    candidates = []
    for number, record in enumerate(read_jsonl(annotations_path, _HATEFUL_MEMES_KEYS), start=1):
        label = record["label"]
        if label not in (0, 1) or isinstance(label, bool):
            raise ValueError(f"{annotations_path}: record {number} has label {label!r}, expected 0 or 1")
        image_path = os.path.join(image_dir, record["img"].split("/")[-1])
        candidates.append(ClassificationExample(record["id"], image_path, label, HATEFUL_MEMES_CLASSNAMES[label],
                                                record["text"]))
    return keep_with_images(candidates)


def load_imagenet(split_dir: str) -> Loaded[ClassificationExample]:
    """The images of one split folder (`<root>/train` or `<root>/val`, one subfolder per class)."""
    names = imagenet_classnames()
    try:
        class_folders, class_to_index = find_classes(split_dir)
        if len(class_folders) != len(names):
            raise ValueError(f"{split_dir}: {len(class_folders)} class folders, ImageNet has {len(names)}")
        listing = make_dataset(split_dir, class_to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise ValueError(f"{split_dir}: {error}".replace("\n", " ")) from None
    # listed files exist, so nothing is skipped
    return Loaded([ClassificationExample(position, path, label, names[label], None)
                   for position, (path, label) in enumerate(listing)])
