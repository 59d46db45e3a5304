"""Few-shot captioning and VQA evaluation runs as the reference runs them (`open_flamingo/eval/evaluate.py`):
for each task, number of shots and trial seed, the same evaluated subset and demonstrations
(`recipe.eval.sampling`), the same prompts (`recipe.eval.prompts`), beam search 3 with length penalty 0, the
same answer cleaning and metrics. Each finished (task, shots, seed) is written at once: its predictions, and
`results.json` with every score so far, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from recipe.eval import prompts
from recipe.eval.sampling import draw_few_shot

CAPTION_TASKS = ("coco", "flickr")
VQA_TASKS = ("vqav2", "ok_vqa", "textvqa", "vizwiz")
# New tokens the reference generates per task.
MAX_NEW_TOKENS = {"coco": 20, "flickr": 20, "vqav2": 5, "ok_vqa": 5, "vizwiz": 5, "textvqa": 10}


@dataclass
class Score:
    task: str
    shots: int
    seed: int
    score: float  # CIDEr x 100, or VQA accuracy x 100
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
    from recipe.eval.tasks.vqa import load_vqa

    splits = {}
    for task in tasks:
        d = datasets[task]
        if task in CAPTION_TASKS:
            train, test = (load_captions(task, d.annotations, split, d.image_dir, d.val_image_dir)
                           for split in ("train", "test"))
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
    if task in CAPTION_TASKS:
        texts = [prompts.caption_prompt(d.captions[0].strip()) for d in demos]
        query = prompts.caption_prompt()
    else:
        texts = [prompts.vqa_prompt(d.question, d.answers[0]) for d in demos]
        query = prompts.vqa_prompt(example.question)
    context_images = [d.image_path for d in demos] if shots > 0 else []
    return prompts.few_shot_prompt(texts, query, shots), context_images + [example.image_path]


def run_task(task: str, split: Split, shots: int, seed: int, generate: Callable, *, num_samples: int | None,
             query_set_size: int, batch_size: int) -> tuple[float, list[dict]]:
    """(score, predictions) of one task at `shots` with one seed. `generate(texts, images, max_new_tokens)`."""
    from recipe.eval.metrics.cider import cider_d
    from recipe.eval.metrics.ptb_tokenize import ptb_tokenize
    from recipe.eval.metrics.vqa_accuracy import postprocess_vqa_generation, vqa_accuracy
    from recipe.eval.tasks.captioning import cider_references

    draws = draw_few_shot(seed, len(split.test), len(split.train),
                          None if num_samples is None else min(num_samples, len(split.test)),
                          min(query_set_size, len(split.train)), prompts.demos_needed(shots))
    predictions = []
    for start in range(0, len(draws.eval_indices), batch_size):
        batch = range(start, min(start + batch_size, len(draws.eval_indices)))
        built = [_prompts(task, split, draws, shots, i) for i in batch]
        outputs = generate([t for t, _ in built], [_images(p) for _, p in built], MAX_NEW_TOKENS[task])
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
    answers = {e.question_id: e.answers for e in split.test}
    accuracy = [vqa_accuracy(p["answer"], answers[p["question_id"]]) for p in predictions]
    return 100.0 * sum(accuracy) / len(accuracy), predictions


def evaluate(splits: dict[str, Split], shots: Sequence[int], seeds: Sequence[int], generate: Callable,
             out_dir: str, *, num_samples: int | None, query_set_size: int, batch_size: int,
             published: str | None = None, log: Callable[[str], None] = print) -> list[Score]:
    """Every task x shots x seed; writes predictions and results.json under `out_dir` as each finishes."""
    os.makedirs(out_dir, exist_ok=True)
    scores: list[Score] = []
    runs = [(task, k, seed) for task in splits for k in shots for seed in seeds]
    started = time.time()
    for done, (task, k, seed) in enumerate(runs):
        t0 = time.time()
        score, predictions = run_task(task, splits[task], k, seed, generate, num_samples=num_samples,
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
