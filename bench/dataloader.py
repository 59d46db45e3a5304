"""Data-loading throughput: the recipe's Streaming loader vs a WebDataset baseline with the reference's
preprocessing, per source, at several worker counts, on the same synthetic samples.

    python -m bench.dataloader --workers 1 2 --laion 1536 --mmc4 384 --out runs/bench_dataloader.json

Writes (once, then reuses) a synthetic corpus at realistic sizes (bench/synthetic.py: JPEGs of ~30-100 KB at
256-512 px; MMC4-like documents with 2-6 images and ~256 tokens) as MDS, and the same samples as WebDataset
tars in the reference's layouts (img2dataset `jpg`/`txt`; OpenFlamingo's MMC4 `json` with base64 images).
Both pipelines decode, resize/normalize with open_clip's 224 px eval transform and tokenize with a ~50k BPE
tokenizer. Throughput is measured after the first batch (startup is reported separately).

The baseline follows OpenFlamingo's data.py as described in docs (written here, not copied): tar samples ->
shuffle buffer (5000, initial 1000) -> LAION: decode + `<image>caption<|endofchunk|>eos` tokenized to the
batch's longest (max 32); MMC4: base64-decode every image >10 KB whose best similarity passes 0.24, decode them
all, keep 6, build the text, tokenize to 256, reject (exception, dropped) with the same rules.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import os
import random
import time

import numpy as np
import torch

from bench.synthetic import bench_tokenizer, write_corpus
from recipe.tokens import END_OF_CHUNK, IMAGE, PAD

LAION_BATCH, MMC4_BATCH = 32, 16


# ---------------------------------------------------------------- WebDataset baseline (reference semantics)

def write_tars(mds_paths: dict[str, str], root: str, per_shard: int = 64) -> dict[str, str]:
    """The MDS corpus's samples as WebDataset tars in the reference's layouts."""
    import webdataset as wds
    from streaming import StreamingDataset

    out = {}
    for name, path in mds_paths.items():
        folder = os.path.join(root, f"wds_{name}")
        out[name] = folder
        if os.path.exists(os.path.join(folder, "done")):
            continue
        os.makedirs(folder, exist_ok=True)
        ds = StreamingDataset(local=path, batch_size=1)
        with wds.ShardWriter(os.path.join(folder, "%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for i in range(ds.num_samples):
                s = ds[i]
                if name == "laion":
                    sink.write({"__key__": s["key"], "jpg": s["image"], "txt": s["caption"]})
                    continue
                ends = np.cumsum(s["image_sizes"])
                infos = [{"image_name": m["image_name"], "matched_text_index": m["matched_text_index"],
                          "image_base64": base64.b64encode(s["images"][e - n:e]).decode()}
                         for m, n, e in zip(s["image_meta"], s["image_sizes"], ends)]
                doc = {"url": s["url"], "text_list": s["texts"], "image_info": infos,
                       "similarity_matrix": s["similarity"]}
                sink.write({"__key__": s["key"].replace("/", "_"), "json": json.dumps(doc).encode()})
        open(os.path.join(folder, "done"), "w").close()
    return out


class LaionBatch:
    def __init__(self, tokenizer, transform):
        self.tokenizer, self.transform = tokenizer, transform

    def __call__(self, batch):
        images, captions = batch
        pixels = torch.stack([self.transform(im) for im in images])
        text = [f"{IMAGE}{c.strip()}{END_OF_CHUNK}{self.tokenizer.eos_token}" for c in captions]
        tok = self.tokenizer(text, max_length=32, padding="longest", truncation="only_first", return_tensors="pt")
        return pixels, tok["input_ids"], tok["attention_mask"]


class Mmc4Doc:
    """One document as the reference's v2 release preprocesses it (per-image argmax, filter before decode)."""

    def __init__(self, tokenizer, transform, max_images=6, max_tokens=256, threshold=0.24):
        self.tokenizer, self.transform = tokenizer, transform
        self.max_images, self.max_tokens, self.threshold = max_images, max_tokens, threshold
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE)
        self.rng = random.Random(0)

    def __call__(self, sample):
        from PIL import Image
        info = json.loads(sample[0])
        sentences = list(info["text_list"])
        images, ixs = [], []
        for image_info, sims in zip(info["image_info"], info["similarity_matrix"]):
            raw = base64.b64decode(image_info["image_base64"])
            best = int(np.argmax(sims))
            if len(raw) // 1000 <= 10 or sims[best] < self.threshold:
                continue
            images.append(Image.open(io.BytesIO(raw)).convert("RGB"))
            ixs.append(best)
        if not images:
            raise ValueError("no images")
        pixels = torch.stack([self.transform(im) for im in images])[:self.max_images]
        ixs = ixs[:self.max_images]
        if len(pixels) < self.max_images:
            pad = torch.zeros((self.max_images - len(pixels), *pixels.shape[1:]))
            pixels = torch.cat([pixels, pad])
        for ix in ixs:
            sentences[ix] = f"{END_OF_CHUNK}{IMAGE}{sentences[ix]}"
        text = " ".join(sentences).replace(END_OF_CHUNK, "", 1)
        text = text.replace(f" {END_OF_CHUNK}", END_OF_CHUNK).replace(f"{IMAGE} ", IMAGE).replace(f" {IMAGE}", IMAGE)
        tok = self.tokenizer(f"{text}{END_OF_CHUNK}{self.tokenizer.eos_token}", max_length=self.max_tokens,
                             truncation=True, padding="max_length", return_tensors="pt")
        n = int((tok["input_ids"] == self.image_id).sum())
        if n < 1 or (n == 1 and self.rng.random() <= 0.5):
            raise ValueError("too few images")
        return pixels, tok["input_ids"][0], tok["attention_mask"][0]


def wds_loader(name: str, folder: str, tokenizer, transform, workers: int):
    import webdataset as wds
    urls = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tar"))
    stages = [wds.SimpleShardList(urls), wds.split_by_worker, wds.tarfile_to_samples(handler=wds.warn_and_continue),
              wds.shuffle(5000, initial=1000, rng=random.Random(0))]
    if name == "laion":
        stages += [wds.decode("pilrgb"), wds.to_tuple("jpg", "txt"), wds.batched(LAION_BATCH, partial=False),
                   wds.map(LaionBatch(tokenizer, transform))]
    else:
        stages += [wds.to_tuple("json"), wds.map(Mmc4Doc(tokenizer, transform), handler=wds.ignore_and_continue),
                   wds.batched(MMC4_BATCH, partial=False)]
    return torch.utils.data.DataLoader(wds.DataPipeline(*stages), batch_size=None, num_workers=workers,
                                       persistent_workers=False)


# ---------------------------------------------------------------- recipe loader

def source_config(name: str, path: str, samples: int):
    from recipe.data.sources import SourceConfig
    return SourceConfig(kind="pairs" if name == "laion" else "interleaved",
                        batch_size=LAION_BATCH if name == "laion" else MMC4_BATCH, epoch_size=samples,
                        streams={name: {"remote": path}}, num_canonical_nodes=1, shuffle_block_size=1 << 12)


def recipe_loader(sources: dict, tokenizer, transform, workers: int):
    from recipe.data.sources import build_train_dataloader
    return build_train_dataloader(sources, tokenizer, transform, seed=0, num_workers=workers,
                                  pin_memory=False).dataloader


class Zipped:
    """The reference's training loop input: its LAION and MMC4 loaders zipped, one batch of each per step."""

    def __init__(self, *loaders):
        self.loaders = loaders

    def __iter__(self):
        return zip(*self.loaders)


def batch_size(batch) -> int:
    if isinstance(batch, dict):
        return sum(b["input_ids"].shape[0] for b in batch.values())
    if isinstance(batch[0], (tuple, list)):  # zipped baseline batches
        return sum(batch_size(b) for b in batch)
    return batch[1].shape[0] if isinstance(batch[1], torch.Tensor) and batch[1].dim() == 2 else len(batch[1])


def measure(loader, max_samples: int) -> dict:
    start = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t0 = time.perf_counter()
    n = 0
    for batch in it:
        n += batch_size(batch)
        if n + batch_size(first) > max_samples:
            break
    elapsed = time.perf_counter() - t0
    del it
    return {"startup_s": round(t0 - start, 2), "samples": n, "seconds": round(elapsed, 2),
            "samples_per_s": round(n / elapsed, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.path.join("runs", "bench_data"))
    p.add_argument("--laion", type=int, default=1536, help="LAION samples in the corpus (and measured)")
    p.add_argument("--mmc4", type=int, default=384, help="MMC4 documents in the corpus (and measured)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=2,
                   help="alternate the two pipelines this many times and keep each one's best run (shared machines)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    import open_clip
    from transformers import AutoTokenizer

    os.makedirs(args.root, exist_ok=True)
    tok_dir = os.path.join(args.root, "tokenizer")
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        bench_tokenizer(tok_dir)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK, IMAGE], "pad_token": PAD})
    transform = open_clip.image_transform(224, is_train=False)
    mds = write_corpus(args.root, args.laion, args.mmc4)
    tars = write_tars(mds, args.root)

    totals = {"laion": args.laion, "mmc4": args.mmc4}
    configs = {n: source_config(n, mds[n], totals[n]) for n in totals}
    # per source, then both together as training reads them (the reference: two loaders of W workers each)
    steps = min(args.laion // LAION_BATCH, args.mmc4 // MMC4_BATCH)
    cases = [(n, {n: configs[n]}, totals[n]) for n in totals]
    cases.append(("laion+mmc4", configs, steps * (LAION_BATCH + MMC4_BATCH)))
    results = []
    for name, sources, total in cases:
        for workers in args.workers:
            best = {}
            for _ in range(args.repeat):
                for impl in ("recipe (Streaming MDS)", "baseline (WebDataset tar)"):
                    if impl.startswith("recipe"):
                        loader = recipe_loader(sources, tokenizer, transform, workers)
                    else:
                        loader = Zipped(*(wds_loader(n, tars[n], tokenizer, transform, workers) for n in sources))
                    r = measure(loader, total)
                    del loader
                    gc.collect()  # stop its (persistent) workers now, not in a later loader's forked worker
                    if impl not in best or r["samples_per_s"] > best[impl]["samples_per_s"]:
                        best[impl] = r
            for impl, r in best.items():
                # the baseline runs one loader (of `workers` processes) per source
                procs = max(workers, 1) * (len(sources) if impl.startswith("baseline") else 1)
                r = {"source": name, "impl": impl, "workers": workers, "worker_processes": procs, **r,
                     "per_worker": round(r["samples_per_s"] / procs, 1)}
                results.append(r)
                print(f"{name:10s} {impl:27s} workers={workers}  {r['samples_per_s']:7.1f} samples/s "
                      f"({r['per_worker']:.1f}/worker process)  startup {r['startup_s']:.1f}s  [{r['samples']} samples]",
                      flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpus": os.cpu_count(), "laion_batch": LAION_BATCH, "mmc4_batch": MMC4_BATCH,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
