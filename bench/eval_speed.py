"""Evaluation speed: examples per second of `recipe.eval` few-shot runs (the reference's prompts, beam search 3,
20 new tokens for captioning, 5 for VQA; class ranking for Hateful Memes and ImageNet's 1000 names) on a
random-init model of an OpenFlamingo shape, over synthetic sets of realistic JPEGs in each task's format;
nothing downloaded.

    python -m bench.eval_speed --shape of3b --json eval-of3b.json
    python -m bench.eval_speed --shape of3b --tasks hateful_memes imagenet --shots 0 4 32

A random-init LM rarely emits <|endofchunk|>, so every example generates its full token budget: the slowest
case of the real benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def write_coco_set(root: str, n_train: int, n_test: int) -> dict:
    """A Karpathy-format COCO split file over synthetic JPEGs, with VQA files over the same images."""
    from bench.synthetic import jpeg_pool, pseudo_words
    from recipe.offline.eval_sets import Example, write_coco_vqav2

    pool = jpeg_pool(64)
    words = pseudo_words(2000)
    examples = [Example(pool[i % len(pool)][0], [" ".join(words[(i * 7 + j) % len(words)] for j in range(10))] * 5,
                        f"What is {words[i % len(words)]}?", [words[i % 50]] * 10) for i in range(n_train + n_test)]
    return write_coco_vqav2(root, examples, n_train)[0]


def write_classification_sets(root: str, n_test: int) -> dict:
    """Hateful Memes files (64 demonstrations, `n_test` memes of both labels) and an ImageNet tree (one train
    image per class, `n_test` val images spread over the classes, at least one in each) over synthetic JPEGs."""
    from bench.synthetic import jpeg_pool, pseudo_words
    from recipe.offline.eval_sets import write_hateful_memes, write_imagenet

    pool = [jpeg for jpeg, _, _ in jpeg_pool(64)]
    words = pseudo_words(2000)
    memes = [(pool[i % len(pool)], " ".join(words[(i * 5 + j) % len(words)] for j in range(12)), i % 2)
             for i in range(64 + n_test)]
    imagenet = {"train": [(c, pool[c % len(pool)]) for c in range(1000)],
                "val": [(i % 1000, pool[(i * 3) % len(pool)]) for i in range(max(n_test, 1000))]}
    return {"hateful_memes": write_hateful_memes(os.path.join(root, "hateful_memes"), memes, n_train=64),
            "imagenet": write_imagenet(os.path.join(root, "imagenet"), imagenet)}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("of3b", "of9b", "tiny"), required=True)
    p.add_argument("--shots", type=int, nargs="+", default=[0, 4])
    p.add_argument("--tasks", nargs="+", choices=("coco", "vqav2", "hateful_memes", "imagenet"),
                   default=["coco", "vqav2"])
    p.add_argument("--classes-per-forward", type=int, default=32)
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--work-dir", default="/tmp/flamingo-eval-bench")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from bench.throughput import SHAPES, shape_assets, versions
    from recipe.trainer_parts import build_flamingo_model
    from recipe.config import ModelConfig
    from recipe.eval.config import parse
    from recipe.eval.run import bind_model, load_splits, run_task

    lm_dir, tok_dir = shape_assets(args.work_dir, args.shape)
    datasets = {**write_coco_set(os.path.join(args.work_dir, "coco"), 64, args.num_samples),
                **write_classification_sets(os.path.join(args.work_dir, "classification"), args.num_samples)}
    cfg = parse({"checkpoint": "-", "tasks": args.tasks, "datasets": datasets})
    splits = load_splits(cfg.tasks, cfg.datasets)
    model_cfg = ModelConfig(vision_name="ViT-L-14", vision_pretrained=None, lm_path=lm_dir, tokenizer_path=tok_dir,
                            lm_random_init=True, cross_attn_every_n_layers=SHAPES[args.shape]["xattn_every"],
                            frozen_dtype="fp32", compile_blocks=False, cuda_graphs=False)
    model, tokenizer, transform = build_flamingo_model(model_cfg)
    gpu = torch.cuda.is_available()
    model.eval().to("cuda" if gpu else "cpu")
    run = bind_model(model, tokenizer, transform, autocast_dtype=torch.bfloat16 if gpu else None,
                     classes_per_forward=args.classes_per_forward)

    rows = []
    for task in args.tasks:
        for shots in args.shots:
            run_task(task, splits[task], shots, 0, run, num_samples=args.batch_size, query_set_size=64,
                     batch_size=args.batch_size)  # warm-up: allocator, kernels
            if gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            _, predictions = run_task(task, splits[task], shots, 42, run, num_samples=args.num_samples,
                                      query_set_size=64, batch_size=args.batch_size)
            if gpu:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            rows.append({"task": task, "shots": shots, "examples": len(predictions), "seconds": round(seconds, 2),
                         "examples_per_s": round(len(predictions) / seconds, 2)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"gpu": torch.cuda.get_device_name() if gpu else "cpu", "shape": args.shape,
              "batch_size": args.batch_size, "classes_per_forward": args.classes_per_forward, "command": " ".join(sys.argv), "versions": versions(), "runs": rows,
              "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
