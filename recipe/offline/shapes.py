"""A tiny world that needs its images: coloured shapes, each captioned with what it shows ("a red circle on the
left"), so a caption is predictable only from its image. Drawn as JPEGs and written in the upstream formats
(img2dataset tars, MMC4 shards) for the demo, the tests and anything else that wants grounded data offline."""

from __future__ import annotations

import io
import os

import numpy as np

from recipe.offline.upstream import mmc4_document, write_img2dataset_tar, write_mmc4_shard

COLOURS = {"red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40)}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")
IMAGE_PX = 64


def caption(colour: str, shape: str, side: str) -> str:
    return f"a {colour} {shape} on the {side}"


def random_scene(rng: np.random.Generator) -> tuple[str, str, str]:
    return (list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))],
            SIDES[rng.integers(len(SIDES))])


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


def corpus_texts() -> list[str]:
    """Every sentence the written data can contain (to train a tokenizer on, and to teach an LM the language)."""
    texts = ["here are some shapes."]
    for colour in COLOURS:
        for shape in SHAPES:
            for side in SIDES:
                texts += [caption(colour, shape, side), f"{caption(colour, shape, side)}."]
    return texts


def to_jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_laion_tars(out_dir: str, num: int, seed: int, per_tar: int = 500, name_offset: int = 0) -> list[str]:
    """`num` captioned shapes as img2dataset tars of `per_tar` samples, named from `name_offset`."""
    rng = np.random.default_rng(seed)
    paths = []
    for t in range(0, num, per_tar):
        shard = f"{t // per_tar + name_offset:05d}"
        samples = []
        for i in range(t, min(num, t + per_tar)):
            scene = random_scene(rng)
            key = f"{shard}{i % per_tar:04d}"
            samples.append((key, to_jpeg(draw(*scene, rng)), caption(*scene),
                            {"url": f"https://example.com/{key}.jpg", "width": IMAGE_PX, "height": IMAGE_PX,
                             "similarity": 0.33}))
        paths.append(write_img2dataset_tar(os.path.join(out_dir, f"{shard}.tar"), samples))
    return paths


def write_mmc4(out_dir: str, num_docs: int, seed: int, shard: int = 0) -> tuple[str, str]:
    """An MMC4 shard plus its flat image folder; returns (shard path, image folder). Each document has an intro
    sentence and 2-3 images, each matched (similarity 0.3, others 0.1) to the sentence describing it."""
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    documents = []
    for d in range(num_docs):
        scenes = [random_scene(rng) for _ in range(int(rng.integers(2, 4)))]
        texts = ["here are some shapes."] + [f"{caption(*s)}." for s in scenes]
        names = [f"{shard}_{d}_{i}.jpg" for i in range(len(scenes))]
        for name, scene in zip(names, scenes):
            with open(os.path.join(image_dir, name), "wb") as f:
                f.write(to_jpeg(draw(*scene, rng)))
        similarity = [[0.3 if j == i + 1 else 0.1 for j in range(len(texts))] for i in range(len(scenes))]
        documents.append(mmc4_document(f"https://example.com/doc/{shard}/{d}", texts, names,
                                       list(range(1, len(scenes) + 1)), similarity))
    return write_mmc4_shard(os.path.join(out_dir, f"docs_shard_{shard}_v2.jsonl.zip"), documents), image_dir


def write_images(out_dir: str, num: int, seed: int) -> list[tuple[str, str]]:
    """`num` shapes as PNG files `<i>.png`; returns their (path, caption)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    samples = []
    for i in range(num):
        scene = random_scene(rng)
        path = os.path.join(out_dir, f"{i}.png")
        draw(*scene, rng).save(path)
        samples.append((path, caption(*scene)))
    return samples
