"""Offline end-to-end demo: synthetic data in the upstream formats -> convert/ -> MDS -> train a tiny
Flamingo on CPU with recipe/train.py -> loss curves, captions and a grounding check in demo_out/.

    make demo        # = .venv/bin/python -m recipe.demo [--out demo_out] [--steps N]

The images are coloured shapes and every caption says what the image shows ("a red circle on the
left"), so the text is only predictable from the image. The LM is first taught the captions' language
(text only), then frozen; Flamingo training must teach the cross-attention to read the colours, shapes
and positions. The grounding checks compare, on held-out images, the loss with the true images against the same
captions with the images shuffled across samples, and the CIDEr of generated captions (recipe.eval's metric)
with the true images against the images shuffled.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tarfile
import time
import zipfile

import numpy as np

COLOURS = {"red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40)}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")
IMAGE_PX = 64
VISION_PX = 32


# ------------------------------------------------------------------------------------- synthetic corpus

def caption(colour: str, shape: str, side: str) -> str:
    return f"a {colour} {shape} on the {side}"


def draw(colour: str, shape: str, side: str, rng: np.random.Generator):
    """A shape of `colour` in the `side` half of a light canvas, with jittered size/position/background."""
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(225, 256, 3))
    img = Image.new("RGB", (IMAGE_PX, IMAGE_PX), bg)
    d = ImageDraw.Draw(img)
    r = int(rng.integers(10, 15))
    cx = int(rng.integers(r + 1, IMAGE_PX // 2 - r)) + (IMAGE_PX // 2 if side == "right" else 0)
    cy = int(rng.integers(r + 1, IMAGE_PX - r - 1))
    fill = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[colour])
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def random_scene(rng: np.random.Generator) -> tuple[str, str, str]:
    return (list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))],
            SIDES[rng.integers(len(SIDES))])


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_laion_tars(out_dir: str, num: int, seed: int, per_tar: int = 500, name_offset: int = 0) -> list[str]:
    """img2dataset-style WebDataset shards: `<key>.jpg`, `<key>.txt`, `<key>.json` per sample."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for t in range(0, num, per_tar):
        path = os.path.join(out_dir, f"{t // per_tar + name_offset:05d}.tar")
        with tarfile.open(path, "w") as tar:
            for i in range(t, min(num, t + per_tar)):
                scene = random_scene(rng)
                key = f"{t // per_tar + name_offset:05d}{i % per_tar:04d}"
                text = caption(*scene)
                meta = {"key": key, "caption": text, "url": f"https://example.com/{key}.jpg", "status": "success",
                        "width": IMAGE_PX, "height": IMAGE_PX, "similarity": 0.33}
                _add(tar, f"{key}.jpg", _jpeg(draw(*scene, rng)))
                _add(tar, f"{key}.txt", text.encode())
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        paths.append(path)
    return paths


def write_mmc4(out_dir: str, num_docs: int, seed: int, shard: int = 0) -> tuple[str, str]:
    """MMC4-style `docs_shard_<n>_v2.jsonl.zip` plus a flat image folder. Each document has an intro
    sentence and 2-3 images, each matched (similarity 0.3, others 0.1) to the sentence describing it."""
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    lines = []
    for d in range(num_docs):
        scenes = [random_scene(rng) for _ in range(int(rng.integers(2, 4)))]
        texts = ["here are some shapes."] + [f"{caption(*s)}." for s in scenes]
        infos, sim = [], []
        for i, scene in enumerate(scenes):
            name = f"{shard}_{d}_{i}.jpg"
            with open(os.path.join(image_dir, name), "wb") as f:
                f.write(_jpeg(draw(*scene, rng)))
            infos.append({"image_name": name, "raw_url": f"https://example.com/{name}",
                          "matched_text_index": i + 1, "matched_sim": 0.3})
            sim.append([0.3 if j == i + 1 else 0.1 for j in range(len(texts))])
        lines.append(json.dumps({"url": f"https://example.com/doc/{shard}/{d}", "text_list": texts,
                                 "image_info": infos, "similarity_matrix": sim}))
    path = os.path.join(out_dir, f"docs_shard_{shard}_v2.jsonl.zip")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"docs_shard_{shard}_v2.jsonl", "\n".join(lines) + "\n")
    return path, image_dir


def corpus_texts() -> list[str]:
    """Every sentence the demo data can contain (for the tokenizer and the LM's language lesson)."""
    texts = ["here are some shapes."]
    for colour in COLOURS:
        for shape in SHAPES:
            for side in SIDES:
                texts += [caption(colour, shape, side), f"{caption(colour, shape, side)}."]
    return texts


# ------------------------------------------------------------------------------------------ offline assets

def write_tiny_vision(out_dir: str) -> str:
    """An open_clip `local-dir:` model folder for a tiny ViT (random frozen weights, seeded by the run)."""
    os.makedirs(out_dir, exist_ok=True)
    cfg = {"model_cfg": {"embed_dim": 32,
                         "vision_cfg": {"image_size": VISION_PX, "layers": 2, "width": 64, "patch_size": 8},
                         "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}},
           "preprocess_cfg": {}}
    with open(os.path.join(out_dir, "open_clip_config.json"), "w") as f:
        json.dump(cfg, f)
    return f"local-dir:{out_dir}"


def teach_lm_language(lm_dir: str, tokenizer_dir: str, steps: int = 200, seed: int = 0) -> None:
    """Train the tiny LM on the corpus sentences (text only), so that the frozen LM knows the language
    and training has to supply only what the image shows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir)
    texts = [t + tok.eos_token for t in corpus_texts()]
    enc = [tok(t)["input_ids"] for t in texts]
    length = max(map(len, enc))
    ids = torch.full((len(enc), length), tok.eos_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(enc):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(enc), (32,), generator=g)
        loss = model(input_ids=ids[pick], attention_mask=mask[pick], labels=labels[pick]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(lm_dir)


def prepare(out: str, *, laion: int = 2000, mmc4_docs: int = 600, heldout: int = 128, seed: int = 0,
            lm_family: str = "mpt", teach_steps: int = 200, heldout_images: int = 24, log=print) -> dict:
    """Build the raw corpus, convert it to MDS with convert/, and write the offline model assets.
    Returns the paths the demo config refers to."""
    from convert.laion_to_mds import convert_laion
    from convert.mmc4_to_mds import convert_mmc4
    from recipe import offline

    raw, mds = os.path.join(out, "raw"), os.path.join(out, "mds")
    t0 = time.time()
    laion_tars = write_laion_tars(os.path.join(raw, "laion"), laion, seed)
    heldout_tars = write_laion_tars(os.path.join(raw, "laion-heldout"), heldout, seed + 1, name_offset=900)
    mmc4_zip, mmc4_images = write_mmc4(os.path.join(raw, "mmc4"), mmc4_docs, seed + 2, shard=0)
    held_zip, held_images = write_mmc4(os.path.join(raw, "mmc4-heldout"), max(heldout // 4, 8), seed + 3, shard=1)
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
    rng = np.random.default_rng(seed + 4)
    image_dir = os.path.join(out, "heldout_images")
    os.makedirs(image_dir, exist_ok=True)
    samples = []
    for i in range(heldout_images):
        scene = random_scene(rng)
        path = os.path.join(image_dir, f"{i}.png")
        draw(*scene, rng).save(path)
        samples.append((path, caption(*scene)))

    assets = os.path.join(out, "assets")
    tokenizer_dir = offline.train_tokenizer(corpus_texts() * 4, os.path.join(assets, "tokenizer"), vocab_size=320)
    from transformers import AutoTokenizer
    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    lm_dir = offline.save_tiny_lm(lm_family, os.path.join(assets, "lm"), vocab, seed=seed, hidden=64, layers=4,
                                  heads=4)
    t0 = time.time()
    teach_lm_language(lm_dir, tokenizer_dir, steps=teach_steps, seed=seed)
    log(f"[demo] tiny {lm_family} LM taught the captions' language (text only, {time.time() - t0:.1f}s), "
        "then frozen for Flamingo training")
    return {"out": out, "tokenizer": tokenizer_dir, "lm": lm_dir, "vision": write_tiny_vision(
        os.path.join(assets, "vision")), "samples": samples}


# ------------------------------------------------------------------------------------------------ results

def grounding_check(trainer, eval_batches) -> tuple[float, float]:
    """Held-out token-mean loss with the true images vs. the images rolled by one across the batch (every
    caption then sees another sample's image)."""
    import torch

    from recipe.composer_model import shifted_token_mean_ce

    model = trainer.state.model
    model.eval()
    sums = {"true": 0.0, "shuffled": 0.0}
    tokens = 0
    with torch.no_grad():
        for batch in eval_batches:
            for name, b in batch.items():
                n = int((b["labels"][:, 1:] != -100).sum())
                for mode in sums:
                    images = b["images"] if mode == "true" else torch.roll(b["images"], 1, dims=0)
                    nimg = b["num_images"] if mode == "true" else torch.roll(b["num_images"], 1, dims=0)
                    logits = model.model(vision_x=images, lang_x=b["input_ids"], attention_mask=b["attention_mask"],
                                         num_images=nimg).logits
                    sums[mode] += shifted_token_mean_ce(logits, b["labels"]).item() * n
                tokens += n
    return sums["true"] / tokens, sums["shuffled"] / tokens


def captioning_gap(flamingo, tokenizer, transform, samples: list[tuple[str, str]]) -> tuple[float, float]:
    """CIDEr x100 (recipe.eval's metric) of captions generated for held-out images against their true captions:
    with the true images, and with the images rolled by one (each prompt sees another sample's image)."""
    from PIL import Image

    from recipe.eval.generation import generate
    from recipe.eval.metrics.cider import cider_d
    from recipe.eval.metrics.ptb_tokenize import ptb_tokenize

    images = [[Image.open(path).convert("RGB")] for path, _ in samples]
    references = {i: [ptb_tokenize(text)] for i, (_, text) in enumerate(samples)}
    scores = []
    for shown in (images, images[1:] + images[:1]):
        # greedy: beam search without a length penalty prefers this small model's immediate <|endofchunk|>
        outputs = generate(flamingo, tokenizer, transform, ["<image>"] * len(shown), shown, max_new_tokens=12,
                           num_beams=1)
        scores.append(100.0 * cider_d({i: ptb_tokenize(o) for i, o in enumerate(outputs)}, references)[0])
    return scores[0], scores[1]


def plot_losses(jsonl: str, sources: list[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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

    from recipe.callbacks.captions import CaptionSamples
    from recipe.config import load_config
    from recipe.data.sources import build_eval_dataloader
    from recipe.train import main

    start = time.time()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    paths = prepare(out, seed=seed, log=log)
    yaml = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "yamls", "demo.yaml")
    overrides = [f"variables.out={out}", f"variables.tokenizer={paths['tokenizer']}",
                 f"variables.lm={paths['lm']}", f"model.vision_name={paths['vision']}",
                 f"max_duration={steps}ba", f"seed={seed}"]
    raw = load_config(yaml, overrides)
    jsonl = raw["loggers"]["jsonl"]["path"].replace("{run_name}", raw["run_name"])
    shutil.rmtree(os.path.join(out, "runs", raw["run_name"]), ignore_errors=True)  # a fresh run, not a continuation
    t0 = time.time()
    trainer = main(raw)
    train_s = time.time() - t0
    log(f"[demo] trained {steps} steps in {train_s:.0f}s")

    # Held-out grounding check and generations.
    model = trainer.state.model
    flamingo = model.model
    cfg_sources = raw["eval_data"]["sources"]
    tokenizer, transform = trainer_assets(trainer)
    batches = []
    for name, src in cfg_sources.items():
        spec = build_eval_dataloader(name, src, tokenizer, transform, seed=seed, num_workers=0)
        batches += list(spec.dataloader)
    true_loss, shuffled_loss = grounding_check(trainer, batches)
    gen = CaptionSamples([p for p, _ in paths["samples"]], tokenizer, transform, max_new_tokens=12)
    captions = gen.generate(trainer.state)
    true_cider, shuffled_cider = captioning_gap(flamingo.eval(), tokenizer, transform, paths["samples"])
    flamingo.train()

    os.makedirs(out, exist_ok=True)
    plot_losses(jsonl, list(raw["train_data"]["sources"]), os.path.join(out, "loss_curves.png"))
    rows = [{"image": os.path.relpath(p, out), "truth": truth, "generated": c}
            for (p, truth), c in zip(paths["samples"], captions)]
    exact = sum(r["generated"].rstrip(".") == r["truth"] for r in rows)
    result = {"steps": steps, "train_seconds": round(train_s, 1), "total_seconds": round(time.time() - start, 1),
              "heldout_loss_true_images": round(true_loss, 4), "heldout_loss_shuffled_images": round(shuffled_loss, 4),
              "grounding_gap": round(shuffled_loss - true_loss, 4),
              "heldout_cider_true_images": round(true_cider, 2), "heldout_cider_shuffled_images": round(shuffled_cider, 2),
              "generations": rows,
              "exact_generations": exact, "metrics_jsonl": jsonl}
    with open(os.path.join(out, "generations.md"), "w") as f:
        f.write("| image | true caption | generated |\n|---|---|---|\n")
        f.writelines(f"| ![]({r['image']}) | {r['truth']} | {r['generated']} |\n" for r in rows)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=2)

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


def trainer_assets(trainer):
    """The tokenizer and image transform the captions callback holds (built once by train.py)."""
    from recipe.callbacks.captions import CaptionSamples

    cb = next(c for c in trainer.state.callbacks if isinstance(c, CaptionSamples))
    return cb.tokenizer, cb.image_transform


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.out, args.steps, args.seed)
