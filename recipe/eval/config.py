"""The evaluation command's configuration: a YAML plus `dotted.key=value` overrides, schema-checked with the
training config's machinery (unknown keys and wrong types are one-line errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from recipe.config import ConfigError, build_dataclass
from recipe.eval.published import TABLE_11
from recipe.eval.run import CAPTION_TASKS, CLASSIFICATION_TASKS, VQA_TASKS


@dataclass
class CaptionData:
    """Karpathy's split file; COCO images in `image_dir` (train2014) and `val_image_dir` (val2014)."""
    annotations: str
    image_dir: str
    val_image_dir: Optional[str] = None


@dataclass
class VQAData:
    """VQA-format question and annotation files of the demonstration (train) and evaluated (test) splits."""
    train_questions: str
    train_annotations: str
    train_image_dir: str
    test_questions: str
    test_annotations: str
    test_image_dir: str


@dataclass
class HatefulMemesData:
    """The demonstration (train.jsonl) and evaluated (e.g. dev_seen.jsonl) annotation files; the `img/` folder."""
    train_annotations: str
    test_annotations: str
    image_dir: str


@dataclass
class ImageNetData:
    """The folder holding `train/` (demonstrations) and `val/` (evaluated), one subfolder per class in each."""
    root: str


DATA = {**dict.fromkeys(CAPTION_TASKS, CaptionData), **dict.fromkeys(VQA_TASKS, VQAData),
        "hateful_memes": HatefulMemesData, "imagenet": ImageNetData}


@dataclass
class EvalConfig:
    checkpoint: str  # Composer checkpoint (file / sharded folder), an exported --hf folder, or OpenFlamingo weights
    tasks: list[str]  # which of `datasets` to run
    datasets: dict[str, Any] = field(default_factory=dict)  # task name -> its files (a dataclass of DATA)
    model: Optional[dict[str, Any]] = None  # `model` config keys, for released OpenFlamingo weights
    shots: list[int] = field(default_factory=lambda: [0, 4, 8, 16, 32])
    seeds: list[int] = field(default_factory=lambda: [42])
    num_samples: Optional[int] = None  # evaluated examples per run (None: the whole test split)
    query_set_size: int = 2048  # demonstrations are drawn from this many training examples
    batch_size: int = 8
    # Classification: candidate classes scored per forward, each on batch_size rows holding a copy of its
    # prompt's KV cache (memory grows with both; ImageNet's 1000 classes take ceil(1000 / this) forwards).
    classes_per_forward: int = 32
    precision: Literal["fp32", "amp_bf16"] = "amp_bf16"
    device: Optional[Literal["cpu", "gpu"]] = None  # None: a GPU when there is one
    out_dir: str = "eval_out"
    # Print this released model's paper scores beside ours in results.md (recipe.eval.published); null: none.
    published: Optional[str] = None
    variables: dict[str, Any] = field(default_factory=dict)  # free-form `${variables.x}` anchors, not passed on


def parse(raw: dict) -> EvalConfig:
    cfg = build_dataclass(EvalConfig, raw)
    known = CAPTION_TASKS + VQA_TASKS + CLASSIFICATION_TASKS
    for task in cfg.tasks:
        if task not in known:
            raise ConfigError(f"tasks: unknown task {task!r}; known: {', '.join(known)}")
        if task not in cfg.datasets:
            raise ConfigError(f"tasks: {task} has no files under datasets.{task}")
    cfg.datasets = {task: build_dataclass(DATA[task], cfg.datasets[task], f"datasets.{task}") for task in cfg.tasks}
    if cfg.published is not None and cfg.published not in TABLE_11:
        raise ConfigError(f"published: unknown model {cfg.published!r}; known: {', '.join(TABLE_11)}")
    if any(k < 0 for k in cfg.shots) or cfg.batch_size < 1 or cfg.classes_per_forward < 1:
        raise ConfigError(f"shots must be >= 0, batch_size and classes_per_forward >= 1, got shots={cfg.shots}, "
                          f"batch_size={cfg.batch_size}, classes_per_forward={cfg.classes_per_forward}")
    return cfg
