"""Few-shot captioning, VQA and classification runs as the reference runs them (`open_flamingo/eval/evaluate.py`):
for each task, number of shots and trial seed, the same evaluated subset and demonstrations
(`recipe.eval.sampling`), the same prompts (`recipe.eval.prompts`), beam search 3 with length penalty 0 (or, for
classification, the rank of each class name's mean token log-likelihood: `recipe.eval.ranking`), the same
answer cleaning and metrics. Each finished (task, shots, seed) is written at once: its predictions, and
`results.json` with every score so far, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache

import torch

from recipe.eval import prompts
from recipe.eval.sampling import draw_few_shot

CAPTION_TASKS = ("coco", "flickr")
VQA_TASKS = ("vqav2", "ok_vqa", "textvqa", "vizwiz")
CLASSIFICATION_TASKS = ("hateful_memes", "imagenet")
# New tokens the reference generates per task.
MAX_NEW_TOKENS = {"coco": 20, "flickr": 20, "vqav2": 5, "ok_vqa": 5, "vizwiz": 5, "textvqa": 10}


@dataclass
class Model:
    """What a run asks of the model: `generate(texts, images, max_new_tokens)` -> one continuation per prompt
    (`recipe.eval.generation`); `rank(texts, images, class_names)` -> (prompts, classes) float scores, higher
    for likelier classes (`recipe.eval.ranking`). `images[i]`: the PIL images of prompt i."""
    generate: Callable[[list[str], list[list], int], list[str]]
    rank: Callable[[list[str], list[list], Sequence[str]], torch.Tensor]


def bind_model(flamingo, tokenizer, image_transform, *, autocast_dtype: torch.dtype | None = None,
               classes_per_forward: int = 32) -> Model:
    """A loaded Flamingo as a run calls it; each task's class names are tokenized once."""
    from recipe.eval.generation import generate
    from recipe.eval.ranking import class_tokens, rank_classes

    tokens = cache(lambda names: class_tokens(tokenizer, names))
    return Model(
        generate=lambda texts, images, max_new_tokens: generate(flamingo, tokenizer, image_transform, texts, images,
                                                                max_new_tokens, autocast_dtype=autocast_dtype),
        rank=lambda texts, images, names: rank_classes(flamingo, tokenizer, image_transform, texts, images,
                                                       tokens(tuple(names)), classes_per_forward, autocast_dtype))


@dataclass
class Score:
    task: str
    shots: int
    seed: int
    score: float  # CIDEr x 100, VQA accuracy x 100, ROC-AUC x 100 (Hateful Memes) or top-1 x 100 (ImageNet)
    n: int  # examples scored
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)  # examples left out when the task was read, by reason


@dataclass
class Split:
    """A task's demonstration pool (train) and evaluated examples (test), as `recipe.eval.tasks` read them."""
    train: list
    test: list
    skipped: dict[str, int]


def load_splits(tasks: Sequence[str], datasets: dict) -> dict[str, Split]:
    """Each task's demonstration pool and evaluated examples from its files (`recipe.eval.config` entries);
    the examples skipped on reading are counted per split and reason."""
    from recipe.eval.tasks.captioning import load_captions
    from recipe.eval.tasks.classification import load_hateful_memes, load_imagenet
    from recipe.eval.tasks.vqa import load_vqa

    splits = {}
    for task in tasks:
        d = datasets[task]
        if task in CAPTION_TASKS:
            train, test = (load_captions(task, d.annotations, split, d.image_dir, d.val_image_dir)
                           for split in ("train", "test"))
        elif task == "hateful_memes":
            train, test = (load_hateful_memes(path, d.image_dir) for path in (d.train_annotations, d.test_annotations))
        elif task == "imagenet":
            train, test = (load_imagenet(os.path.join(d.root, part)) for part in ("train", "val"))
        else:
            train = load_vqa(task, d.train_questions, d.train_image_dir, d.train_annotations)
            test = load_vqa(task, d.test_questions, d.test_image_dir, d.test_annotations)
        skipped = {f"{part}/{reason}": n for part, loaded in (("train", train), ("test", test))
                   for reason, n in loaded.skipped.items()}
        if not train.examples or not test.examples:
            raise ValueError(f"{task}: no usable examples (skipped: {skipped or 'none'})")
        splits[task] = Split(train.examples, test.examples, skipped)
    return splits


def _images(paths: Sequence[str]) -> list:
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as img:
            out.append(img.convert("RGB"))
    return out


def _prompts(task: str, split: Split, draws, shots: int, index: int) -> tuple[str, list[str]]:
    """(text, image paths) of evaluated example `index` of `draws`."""
    example = split.test[draws.eval_indices[index]]
    demos = [split.train[i] for i in draws.demos[index]]
    separator = "\n"
    if task in CAPTION_TASKS:
        texts = [prompts.caption_prompt(d.captions[0].strip()) for d in demos]
        query = prompts.caption_prompt()
    elif task == "hateful_memes":
        texts = [prompts.hateful_memes_prompt(d.text, d.class_name) for d in demos]
        query, separator = prompts.hateful_memes_prompt(example.text), ""
    elif task == "imagenet":
        texts = [prompts.imagenet_prompt(d.class_name) for d in demos]
        query, separator = prompts.imagenet_prompt(), ""
    else:
        texts = [prompts.vqa_prompt(d.question, d.answers[0]) for d in demos]
        query = prompts.vqa_prompt(example.question)
    context_images = [d.image_path for d in demos] if shots > 0 else []
    return prompts.few_shot_prompt(texts, query, shots, separator), context_images + [example.image_path]


def class_names(task: str) -> tuple[str, ...]:
    """The candidate classes of a classification task, by label."""
    from recipe.eval.tasks.classification import HATEFUL_MEMES_CLASSNAMES, imagenet_classnames

    return HATEFUL_MEMES_CLASSNAMES if task == "hateful_memes" else imagenet_classnames()


def run_task(task: str, split: Split, shots: int, seed: int, model: Model, *, num_samples: int | None,
             query_set_size: int, batch_size: int) -> tuple[float, list[dict]]:
    """(score, predictions) of one task at `shots` with one seed."""
    from recipe.eval.metrics.auc import roc_auc, top1_accuracy
    from recipe.eval.metrics.cider import cider_d
    from recipe.eval.metrics.ptb_tokenize import ptb_tokenize
    from recipe.eval.metrics.vqa_accuracy import postprocess_vqa_generation, vqa_accuracy
    from recipe.eval.tasks.captioning import cider_references

    draws = draw_few_shot(seed, len(split.test), len(split.train),
                          None if num_samples is None else min(num_samples, len(split.test)),
                          min(query_set_size, len(split.train)), prompts.demos_needed(shots))
    predictions, class_scores = [], []
    for start in range(0, len(draws.eval_indices), batch_size):
        batch = range(start, min(start + batch_size, len(draws.eval_indices)))
        built = [_prompts(task, split, draws, shots, i) for i in batch]
        texts, images = [t for t, _ in built], [_images(p) for _, p in built]
        if task in CLASSIFICATION_TASKS:
            scores = model.rank(texts, images, class_names(task))
            class_scores.append(scores)
            predictions += _classified(task, [split.test[draws.eval_indices[i]] for i in batch], scores)
            continue
        outputs = model.generate(texts, images, MAX_NEW_TOKENS[task])
        for i, out in zip(batch, outputs):
            example = split.test[draws.eval_indices[i]]
            if task in CAPTION_TASKS:
                predictions.append({"image_id": example.image_id, "caption": prompts.clean_caption(out)})
            else:
                predictions.append({"question_id": example.question_id, "answer": postprocess_vqa_generation(out)})
    if task in CAPTION_TASKS:
        by_image = {p["image_id"]: p["caption"] for p in predictions}  # rank padding repeats an image
        refs = cider_references([e for e in split.test if e.image_id in by_image])
        score, _ = cider_d({k: ptb_tokenize(c) for k, c in by_image.items()},
                           {k: [ptb_tokenize(c) for c in caps] for k, caps in refs.items()})
        return 100.0 * score, predictions
    if task in CLASSIFICATION_TASKS:
        labels = [split.test[i].label for i in draws.eval_indices]
        scores = torch.cat(class_scores)
        if task == "hateful_memes":  # p("yes") against p("no"), as the reference ranks memes
            return 100.0 * roc_auc(labels, scores.softmax(dim=1)[:, 1].numpy()), predictions
        return 100.0 * top1_accuracy(scores.numpy(), labels), predictions
    answers = {e.question_id: e.answers for e in split.test}
    accuracy = [vqa_accuracy(p["answer"], answers[p["question_id"]]) for p in predictions]
    return 100.0 * sum(accuracy) / len(accuracy), predictions


def _classified(task: str, examples: list, scores: torch.Tensor) -> list[dict]:
    """Per example: its label's and the best class's names, and the best class's probability among the classes
    (softmax of the scores: the reference's `pred_score`)."""
    names = class_names(task)
    probabilities = scores.softmax(dim=1)
    best = scores.argmax(dim=1).tolist()
    return [{"id": e.id, "label": e.class_name, "prediction": names[b], "probability": round(p[b].item(), 6)}
            for e, b, p in zip(examples, best, probabilities)]


def evaluate(splits: dict[str, Split], shots: Sequence[int], seeds: Sequence[int], model: Model,
             out_dir: str, *, num_samples: int | None, query_set_size: int, batch_size: int,
             published: str | None = None, log: Callable[[str], None] = print) -> list[Score]:
    """Every task x shots x seed; writes predictions and results.json under `out_dir` as each finishes."""
    os.makedirs(out_dir, exist_ok=True)
    scores: list[Score] = []
    runs = [(task, k, seed) for task in splits for k in shots for seed in seeds]
    started = time.time()
    for done, (task, k, seed) in enumerate(runs):
        t0 = time.time()
        score, predictions = run_task(task, splits[task], k, seed, model, num_samples=num_samples,
                                      query_set_size=query_set_size, batch_size=batch_size)
        scores.append(Score(task, k, seed, round(score, 4), len(predictions), round(time.time() - t0, 2),
                            splits[task].skipped))
        _write(os.path.join(out_dir, f"predictions_{task}_{k}shot_seed{seed}.json"), predictions)
        _write(os.path.join(out_dir, "results.json"), {"scores": [asdict(s) for s in scores],
                                                       "summary": summarize(scores)})
        eta = (time.time() - started) / (done + 1) * (len(runs) - done - 1)
        log(f"[eval {done + 1}/{len(runs)}] {task} {k}-shot seed {seed}: {score:.2f} "
            f"({len(predictions)} examples, {time.time() - t0:.1f}s; ETA {eta:.0f}s)")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(scores, published))
    return scores


def summarize(scores: Sequence[Score]) -> list[dict]:
    """Mean and standard deviation over seeds, per task and shots."""
    groups: dict[tuple[str, int], list[float]] = {}
    for s in scores:
        groups.setdefault((s.task, s.shots), []).append(s.score)
    return [{"task": t, "shots": k, "mean": round(statistics.fmean(v), 2),
             "std": round(statistics.stdev(v), 2) if len(v) > 1 else 0.0, "seeds": len(v)}
            for (t, k), v in groups.items()]


def markdown(scores: Sequence[Score], published: str | None = None) -> str:
    """The summary as a table; with `published` (a model of `recipe.eval.published`), its paper scores beside."""
    from recipe.eval.published import published_score

    head = "| task | shots | score (mean ± std over seeds) | seeds |"
    rule = "|---|---|---|---|"
    if published:
        head, rule = head + f" {published} (paper) |", rule + "---|"
    rows = [head, rule]
    for r in summarize(scores):
        row = f"| {r['task']} | {r['shots']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['seeds']} |"
        if published:
            paper = published_score(published, r["task"], r["shots"])
            row += f" {'-' if paper is None else f'{paper:.1f}'} |"
        rows.append(row)
    return "\n".join(rows) + "\n"


def _write(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)  # a reader never sees half a file
