"""Few-shot evaluation of a trained model on OpenFlamingo's benchmarks (captioning: COCO, Flickr30k; VQA:
VQAv2, OK-VQA, TextVQA, VizWiz; classification: Hateful Memes, ImageNet), with the reference's prompts,
demonstrations, decoding, class ranking and metrics.

    python -m recipe.eval yamls/eval.yaml checkpoint=runs/openflamingo-3b/checkpoints/latest-rank0.pt \\
        tasks=[coco,vqav2] shots=[0,4]

Writes <out_dir>/results.json (task, shots, seed, score, n; mean and std over seeds), results.md and the
predictions of every run, each as soon as it finishes.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """The command line (also `flamingo-eval`); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    import torch

    from recipe.config import ConfigError, load_config
    from recipe.eval.checkpoints import load_model
    from recipe.eval.config import parse
    from recipe.eval.run import bind_model, evaluate, load_splits
    from recipe.hub import CheckpointNotFound

    try:
        cfg = parse(load_config(argv[0], argv[1:]))
        splits = load_splits(cfg.tasks, cfg.datasets)
        model, tokenizer, transform = load_model(cfg.checkpoint, cfg.model)
    except (ConfigError, ValueError, CheckpointNotFound, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    gpu = cfg.device == "gpu" or (cfg.device is None and torch.cuda.is_available())
    model.to("cuda" if gpu else "cpu")
    dtype = torch.bfloat16 if cfg.precision == "amp_bf16" and gpu else None
    calls = bind_model(model, tokenizer, transform, autocast_dtype=dtype, classes_per_forward=cfg.classes_per_forward)
    evaluate(splits, cfg.shots, cfg.seeds, calls, cfg.out_dir, num_samples=cfg.num_samples,
             query_set_size=cfg.query_set_size, batch_size=cfg.batch_size, published=cfg.published,
             log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
