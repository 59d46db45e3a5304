"""Offline end-to-end demo: synthetic data in the upstream formats -> convert/ -> MDS -> train a tiny
Flamingo on CPU with recipe/train.py -> loss curves, captions and a grounding check in demo_out/.

    make demo        # = .venv/bin/python -m recipe.demo [--out demo_out] [--steps N]

The images are coloured shapes and every caption says what the image shows (recipe/offline/shapes.py), so the
text is only predictable from the image. The LM is first taught the captions' language (text only), then
frozen; Flamingo training must teach the cross-attention to read the colours, shapes and positions. The
grounding checks (recipe/eval/grounding.py) compare, on held-out images, the loss with the true images against
the same captions with the images shuffled across samples, and the CIDEr of generated captions with the true
images against the images shuffled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time


def prepare(out: str, *, laion: int = 2000, mmc4_docs: int = 600, heldout: int = 128, seed: int = 0,
            lm_family: str = "mpt", teach_steps: int = 200, heldout_images: int = 24, log=print) -> dict:
    """Build the raw corpus, convert it to MDS with convert/, and write the offline model assets.
    Returns the paths the demo config refers to."""
    from transformers import AutoTokenizer

    from convert.laion_to_mds import convert_laion
    from convert.mmc4_to_mds import convert_mmc4
    from recipe.offline import assets, shapes

    raw, mds = os.path.join(out, "raw"), os.path.join(out, "mds")
    t0 = time.time()
    laion_tars = shapes.write_laion_tars(os.path.join(raw, "laion"), laion, seed)
    heldout_tars = shapes.write_laion_tars(os.path.join(raw, "laion-heldout"), heldout, seed + 1, name_offset=900)
    mmc4_zip, mmc4_images = shapes.write_mmc4(os.path.join(raw, "mmc4"), mmc4_docs, seed + 2, shard=0)
    held_zip, held_images = shapes.write_mmc4(os.path.join(raw, "mmc4-heldout"), max(heldout // 4, 8), seed + 3,
                                              shard=1)
    log(f"[demo] raw corpus: {laion} LAION-style pairs in {len(laion_tars)} tars, {mmc4_docs} MMC4-style "
        f"documents, held-out {heldout} pairs ({time.time() - t0:.1f}s)")

    quiet = dict(workers=1, progress_bar=False)
    reports = [convert_laion(laion_tars, os.path.join(mds, "laion"), **quiet),
               convert_laion(heldout_tars, os.path.join(mds, "laion-heldout"), **quiet),
               convert_mmc4([mmc4_zip], os.path.join(mds, "mmc4"), image_dir=mmc4_images, **quiet),
               convert_mmc4([held_zip], os.path.join(mds, "mmc4-heldout"), image_dir=held_images, **quiet)]
    for r in reports:
        log(f"[demo] convert {r['converter']}: {r['samples_written']} samples, {r['rejected_total']} rejected "
            f"-> {os.path.relpath(r['output'])}")

    # Held-out images as plain files, for the captions callback, the generations table and the CIDEr check.
    samples = shapes.write_images(os.path.join(out, "heldout_images"), heldout_images, seed + 4)

    assets_dir = os.path.join(out, "assets")
    tokenizer_dir = assets.train_tokenizer(shapes.corpus_texts() * 4, os.path.join(assets_dir, "tokenizer"),
                                           vocab_size=320)
    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    lm_dir = assets.save_tiny_lm(lm_family, os.path.join(assets_dir, "lm"), vocab, seed=seed, hidden=64, layers=4,
                                 heads=4)
    t0 = time.time()
    assets.teach_lm(lm_dir, tokenizer_dir, shapes.corpus_texts(), steps=teach_steps, seed=seed)
    log(f"[demo] tiny {lm_family} LM taught the captions' language (text only, {time.time() - t0:.1f}s), "
        "then frozen for Flamingo training")
    return {"out": out, "tokenizer": tokenizer_dir, "lm": lm_dir,
            "vision": assets.write_tiny_vision(os.path.join(assets_dir, "vision")), "samples": samples}


def plot_losses(jsonl: str, sources: list[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recipe.callbacks.jsonl_logger import read_metrics

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in sources:
        series = read_metrics(jsonl, f"loss/train/loss_{name}")
        steps = sorted(series)
        values = np.array([series[s] for s in steps])
        k = 10
        smooth = np.convolve(values, np.ones(k) / k, mode="valid") if len(values) > k else values
        ax.plot(steps[len(steps) - len(smooth):], smooth, label=f"{name} (train, {k}-step mean)")
        evals = read_metrics(jsonl, f"metrics/eval_{name}/CrossEntropy/{name}")
        if evals:
            ax.plot(sorted(evals), [evals[s] for s in sorted(evals)], "o--", label=f"{name} (held-out)")
    ax.set_xlabel("batch")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Flamingo demo: loss per source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(out: str = "demo_out", steps: int = 800, seed: int = 0, log=print) -> dict:
    import torch

    from recipe.callbacks import CaptionSamples
    from recipe.config import load_config
    from recipe.data.sources import build_eval_dataloader
    from recipe.eval.grounding import cider_gap, loss_gap
    from recipe.train import main

    start = time.time()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    paths = prepare(out, seed=seed, log=log)
    yaml = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "yamls", "demo.yaml")
    overrides = [f"variables.out={out}", f"variables.tokenizer={paths['tokenizer']}",
                 f"variables.lm={paths['lm']}", f"model.vision_name={paths['vision']}",
                 f"max_duration={steps}ba", f"seed={seed}"]
    raw = load_config(yaml, overrides)
    shutil.rmtree(os.path.join(out, "runs", raw["run_name"]), ignore_errors=True)  # a fresh run, not a continuation
    t0 = time.time()
    trainer = main(raw)
    train_s = time.time() - t0
    log(f"[demo] trained {steps} steps in {train_s:.0f}s")

    # The held-out grounding checks and generations, with the tokenizer and transform train.py built.
    captions_cb = next(c for c in trainer.state.callbacks if isinstance(c, CaptionSamples))
    tokenizer, transform = captions_cb.tokenizer, captions_cb.image_transform
    flamingo = trainer.state.model.model
    batches = [batch for name, src in raw["eval_data"]["sources"].items()
               for batch in build_eval_dataloader(name, src, tokenizer, transform, seed=seed, num_workers=0).dataloader]
    losses = loss_gap(flamingo, batches)
    captions = CaptionSamples([p for p, _ in paths["samples"]], tokenizer, transform,
                              max_new_tokens=12).generate(trainer.state)
    ciders = cider_gap(flamingo, tokenizer, transform, paths["samples"])
    result = {"steps": steps, "train_seconds": round(train_s, 1), "total_seconds": round(time.time() - start, 1)}
    return report(out, raw, result, losses, ciders, paths["samples"], captions, log)


def report(out: str, raw: dict, result: dict, losses: tuple[float, float], ciders: tuple[float, float],
           samples: list[tuple[str, str]], captions: list[str], log=print) -> dict:
    """Write loss_curves.png, generations.md and summary.json to `out`, log the summary; returns the summary."""
    jsonl = raw["loggers"]["jsonl"]["path"].replace("{run_name}", raw["run_name"])
    (true_loss, shuffled_loss), (true_cider, shuffled_cider) = losses, ciders
    os.makedirs(out, exist_ok=True)
    plot_losses(jsonl, list(raw["train_data"]["sources"]), os.path.join(out, "loss_curves.png"))
    rows = [{"image": os.path.relpath(p, out), "truth": truth, "generated": c}
            for (p, truth), c in zip(samples, captions)]
    exact = sum(r["generated"].rstrip(".") == r["truth"] for r in rows)
    result = {**result,
              "heldout_loss_true_images": round(true_loss, 4), "heldout_loss_shuffled_images": round(shuffled_loss, 4),
              "grounding_gap": round(shuffled_loss - true_loss, 4),
              "heldout_cider_true_images": round(true_cider, 2), "heldout_cider_shuffled_images": round(shuffled_cider, 2),
              "generations": rows, "exact_generations": exact, "metrics_jsonl": jsonl}
    with open(os.path.join(out, "generations.md"), "w") as f:
        f.write("| image | true caption | generated |\n|---|---|---|\n")
        f.writelines(f"| ![]({r['image']}) | {r['truth']} | {r['generated']} |\n" for r in rows)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=2)

    steps, train_s = result["steps"], result["train_seconds"]
    log("")
    log("=" * 72)
    log(f"Flamingo demo finished in {result['total_seconds']:.0f}s ({steps} training steps in {train_s:.0f}s)")
    log(f"held-out loss, true images:     {true_loss:.3f}")
    log(f"held-out loss, shuffled images: {shuffled_loss:.3f}   (gap {shuffled_loss - true_loss:+.3f}: "
        f"{'the model uses the images' if shuffled_loss - true_loss > 0.1 else 'NO clear use of the images'})")
    log(f"held-out CIDEr, true images: {true_cider:.1f}; shuffled images: {shuffled_cider:.1f}   (gap "
        f"{true_cider - shuffled_cider:+.1f}, {len(rows)} images, recipe.eval's CIDEr-D)")
    log(f"generations on held-out images ({exact}/{len(rows)} exact; the first 6):")
    for r in rows[:6]:
        log(f"  {os.path.basename(r['image']):6s} truth: {r['truth']:28s} generated: {r['generated']}")
    log(f"outputs: {out}/loss_curves.png, {out}/generations.md, {out}/summary.json, {jsonl}")
    log("=" * 72)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.out, args.steps, args.seed)
