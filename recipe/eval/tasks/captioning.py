"""Image captioning sets from Karpathy's split files (`dataset_coco.json`, `dataset_flickr30k.json`).

Matches OpenFlamingo's `CaptionDataset` (`open_flamingo/eval/eval_datasets.py`): a split's images in file
order; a COCO image lies in the train2014 folder when its `filepath` is "train2014", else in the val2014
folder; a Flickr30k image lies in the one image folder; the image id is COCO's `cocoid`, or for Flickr30k the
file name up to its first period. Deliberate differences: every caption of an image is kept (the reference
returns the first), "val" and "restval" can be read as well, and images whose file is missing are skipped and
counted instead of failing in the evaluation loop.
"""

import os
from dataclasses import dataclass
from typing import Any

from recipe.eval.tasks.loading import Loaded, check_name, field_of_each, keep_with_images, read_json_list

DATASETS = ("coco", "flickr")
SPLITS = ("train", "val", "test")
_KEYS = {"coco": ("filepath", "filename", "split", "sentences", "cocoid"),
         "flickr": ("filename", "split", "sentences")}


@dataclass
class CaptionExample:
    image_id: int | str
    image_path: str
    captions: list[str]


def load_captions(dataset: str, annotations_path: str, split: str, image_dir: str,
                  val_image_dir: str | None = None, include_restval: bool = False) -> Loaded[CaptionExample]:
    """The images of one split with all their raw captions.

    `image_dir` is COCO's train2014 folder or Flickr30k's image folder; `val_image_dir` is COCO's val2014
    folder. `include_restval` adds Karpathy's "restval" images to "train" (the reference leaves them out).
    """
    check_name("dataset", dataset, DATASETS)
    check_name("split", split, SPLITS)
    if dataset == "coco" and val_image_dir is None:
        raise ValueError("coco needs val_image_dir, the val2014 image folder")
    if include_restval and split != "train":
        raise ValueError(f"include_restval extends the train split, not {split!r}")
    wanted = {"train", "restval"} if include_restval else {split}
    candidates = []
    for i, record in enumerate(read_json_list(annotations_path, "images", _KEYS[dataset])):
        if record["split"] in wanted:
            captions = field_of_each(annotations_path, f"images[{i}].sentences", record["sentences"], "raw")
            if not captions:
                raise ValueError(f"{annotations_path}: images[{i}] has no sentences")
            candidates.append(_example(dataset, record, captions, image_dir, val_image_dir))
    return keep_with_images(candidates)


def cider_references(examples: list[CaptionExample]) -> dict[int | str, list[str]]:
    """All raw captions of each image, keyed as the predictions are, for CIDEr."""
    return {example.image_id: list(example.captions) for example in examples}


def _example(dataset: str, record: dict[str, Any], captions: list[str], image_dir: str,
             val_image_dir: str | None) -> CaptionExample:
    filename = record["filename"]
    if dataset == "coco":
        folder = image_dir if record["filepath"] == "train2014" else val_image_dir
        return CaptionExample(record["cocoid"], os.path.join(folder, filename), captions)
    # the reference cuts at the first period, not the last
    return CaptionExample(filename.split(".")[0], os.path.join(image_dir, filename), captions)

