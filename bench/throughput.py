"""Warm steady-state training throughput of a recipe: the real train.py builders, the real multi-source
Streaming dataloader over synthetic MDS shards at realistic sizes, the real Composer Trainer; random-init
weights of a chosen shape, nothing downloaded.

    python -m bench.throughput yamls/flamingo-3b.yaml --shape of3b [dotted.key=value ...] [--json out.json]
    composer -n 2 -m bench.throughput yamls/flamingo-3b.yaml --shape of3b parallelism_config.fsdp.sharding_strategy=FULL_SHARD

Reports (rank 0): step time (median of the measured steps), samples/s per source, real images/s, non-pad
tokens/s, MFU with the same frozen-aware FLOP count SpeedMonitor uses (`flops_per_batch`), peak GPU
memory, and the fraction of step time spent waiting for the dataloader. Per-step losses, step times and
global sample indices are kept so runs on different GPU counts, and resumed runs, can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time

import torch
from composer import Callback, Event, State
from composer.callbacks import CheckpointSaver
from composer.loggers import Logger
from composer.utils import dist

from bench.kernel_profile import StepProfiler

# LLaMA-architecture LMs of the OpenFlamingo shapes (issue: OF-3B and OF-9B), cross-attention interval.
SHAPES = {
    "of3b": dict(layers=24, hidden=2048, heads=16, mlp=5504, xattn_every=1),
    "of9b": dict(layers=32, hidden=4096, heads=32, mlp=11008, xattn_every=4),
    "tiny": dict(layers=2, hidden=256, heads=4, mlp=512, xattn_every=1),  # CPU smoke run of this script
}


class StepTimer(Callback):
    """Per-step wall time (consecutive BATCH_END, device synchronised), dataloader wait, FLOPs and counts."""

    def __init__(self):
        self.rows: list[dict] = []
        self._last_end = None
        self._fetch_start = 0.0
        self._wait = 0.0

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BEFORE_DATALOADER:
            self._fetch_start = time.perf_counter()
        elif event == Event.AFTER_DATALOADER:
            self._wait = time.perf_counter() - self._fetch_start
        elif event == Event.BATCH_END:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            model = state.model.module if hasattr(state.model, "module") else state.model
            batch = state.batch
            row = {"flops": float(model.flops_per_batch(batch)), "wait_s": self._wait,
                   "loss": dict(state.total_loss_dict)}
            for name, sub in batch.items():
                row[f"{name}_ids"] = sub["sample_idx"].tolist()  # this rank's; see gather_sample_ids
                row[f"{name}_samples"] = int(sub["input_ids"].shape[0])
                row[f"{name}_images"] = int(sub["num_images"].sum())
                row[f"{name}_tokens"] = int(sub["attention_mask"].sum())
            if self._last_end is not None:
                row["step_s"] = now - self._last_end
            self._last_end = now
            self.rows.append(row)


def gather_sample_ids(rows: list[dict]) -> None:
    """Replace each step's sample indices by the global step's (all ranks, sorted): data order across GPU
    counts and resumes. One collective after the run, none in the timed steps."""
    everyone = dist.all_gather_object([{k: v for k, v in r.items() if k.endswith("_ids")} for r in rows])
    for i, row in enumerate(rows):
        for key in (k for k in row if k.endswith("_ids")):
            row[key] = sorted(x for rank_rows in everyone for x in rank_rows[i][key])


def shape_assets(work: str, shape: str) -> tuple[str, str]:
    """(LM config folder, tokenizer folder) for a random-init LM of `shape` with a ~50k-token tokenizer."""
    from transformers import LlamaConfig

    from bench.synthetic import bench_tokenizer

    tok_dir, lm_dir = os.path.join(work, "tokenizer"), os.path.join(work, f"lm-{shape}")
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        bench_tokenizer(tok_dir)
    s = SHAPES[shape]
    LlamaConfig(vocab_size=50_000, hidden_size=s["hidden"], intermediate_size=s["mlp"],
                num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
                max_position_embeddings=2048, tie_word_embeddings=False).save_pretrained(lm_dir)
    return lm_dir, tok_dir


def fsdp_units(model: torch.nn.Module) -> dict:
    """FSDP units (FSDP1 wrappers or FSDP2 `fully_shard` modules) by what they own directly (nested units
    excluded): all-trainable, all-frozen, mixed."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    FSDP = (FullyShardedDataParallel, FSDPModule)
    out = {"trainable": 0, "frozen": 0, "mixed": []}
    for name, unit in model.named_modules():
        if not isinstance(unit, FSDP):
            continue
        nested = {id(p) for sub in unit.modules() if isinstance(sub, FSDP) and sub is not unit
                  for p in sub.parameters()}
        flags = {p.requires_grad for p in unit.parameters() if id(p) not in nested}
        if flags == {True}:
            out["trainable"] += 1
        elif flags == {False}:
            out["frozen"] += 1
        elif flags:
            out["mixed"].append(name or "<root>")
    return out


def local_copies(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """This rank's values of every parameter (host copies); parameters with no local values are left out."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.numel() > 0}


def changed_params(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> dict:
    """Which parameters changed value during the run (this rank's shards), by name with the first layer
    index folded: {"trainable"|"frozen": {pattern: [indices]}} plus counts."""
    out = {"trainable": {}, "frozen": {}, "counts": {"trainable": 0, "trainable_changed": 0, "frozen": 0,
                                                     "frozen_changed": 0}}
    for name, p in model.named_parameters():
        if name not in before:
            continue
        kind = "trainable" if p.requires_grad else "frozen"
        out["counts"][kind] += 1
        if torch.equal(before[name], p.detach().cpu()):
            continue
        out["counts"][f"{kind}_changed"] += 1
        index = re.search(r"\.(\d+)\.", name)
        pattern = re.sub(r"\.(\d+)\.", ".*.", name, count=1)
        out[kind].setdefault(pattern, []).append(int(index.group(1)) if index else None)
    return out


def summarize(rows: list[dict], warmup: int, world: int, peak_flops: float | None) -> dict:
    timed = [r for r in rows[warmup:] if "step_s" in r]
    step = statistics.median(r["step_s"] for r in timed)
    total = sum(r["step_s"] for r in timed)
    sources = sorted({k[: -len("_samples")] for r in timed for k in r if k.endswith("_samples")})
    per = lambda key: sum(r[key] for r in timed) / total  # noqa: E731 - per-GPU rate over the timed window
    out = {
        "world_size": world,
        "steps_timed": len(timed),
        "step_s_median": round(step, 4),
        "step_s_mean": round(total / len(timed), 4),
        "data_wait_frac": round(sum(r["wait_s"] for r in timed) / total, 4),
        "tflops_per_gpu": round(per("flops") / 1e12, 1),
    }
    for s in sources:
        out[f"{s}_samples_per_s_per_gpu"] = round(per(f"{s}_samples"), 1)
    out["images_per_s_per_gpu"] = round(sum(per(f"{s}_images") for s in sources), 1)
    out["tokens_per_s_per_gpu"] = round(sum(per(f"{s}_tokens") for s in sources), 0)
    if peak_flops:
        out["mfu"] = round(per("flops") / peak_flops, 4)
    out["losses"] = [r["loss"].get("loss/train/total") for r in rows]
    out["step_s"] = [round(r["step_s"], 4) if "step_s" in r else None for r in rows]
    out["images_per_step"] = [sum(r[f"{s}_images"] for s in sources) for r in rows]  # step time vs vision work
    out["sample_ids"] = {s: [r.get(f"{s}_ids") for r in rows] for s in sources}
    return out


def versions() -> dict[str, str]:
    """The stack a figure was measured on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "cuda": torch.version.cuda or "none"}
    for dist_name in ("torch", "mosaicml", "mosaicml-streaming", "transformers", "open_clip_torch"):
        try:
            out[dist_name] = version(dist_name)
        except PackageNotFoundError:
            out[dist_name] = "not installed"
    return out


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("yaml")
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--steps", type=int, default=20, help="measured steps")
    p.add_argument("--warmup", type=int, default=8, help="steps left out of the figures (compile, allocator)")
    p.add_argument("--work-dir", default="/tmp/flamingo-bench")
    p.add_argument("--json", default=None, help="write the figures here (rank 0)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after the measured steps, profile N more: GPU time by kernel kind, GPU idle share")
    p.add_argument("--trace", action="store_true", help="with --profile and --json: also a Chrome trace")
    p.add_argument("--check-params", action="store_true",
                   help="report which parameters changed during the run (keeps a host copy of the model)")
    args, overrides = p.parse_known_args(argv)

    from composer.callbacks.speed_monitor import get_gpu_flops_available
    from composer.utils import get_device

    from bench.synthetic import write_corpus
    from recipe.config import load_config, validate
    from recipe.train import build_trainer

    device = get_device(None)
    dist.initialize_dist(device)
    world, local_rank = dist.get_world_size(), dist.get_local_rank()
    raw = load_config(args.yaml, overrides)
    src = raw["train_data"]["sources"]
    measured = args.warmup + args.steps + 1
    steps = measured + args.profile
    corpus = os.path.join(args.work_dir, "corpus")
    checkpoints = os.path.join(args.work_dir, "checkpoints", f"{args.shape}-{world}gpu")
    if local_rank == 0:  # data and assets once per node; the others wait at the barrier
        shutil.rmtree(checkpoints, ignore_errors=True)  # each bench run starts fresh
        write_corpus(corpus, n_pairs=steps * world * src["laion"]["batch_size"],
                     n_docs=steps * world * src["mmc4"]["batch_size"])
        shape_assets(args.work_dir, args.shape)
    dist.barrier()
    lm_dir, tok_dir = os.path.join(args.work_dir, f"lm-{args.shape}"), os.path.join(args.work_dir, "tokenizer")

    bench_overrides = [
        f"variables.data={corpus}", f"model.lm_path={lm_dir}", f"model.tokenizer_path={tok_dir}",
        "model.vision_pretrained=null", "model.lm_random_init=true", "model.trust_remote_code=false",
        f"model.cross_attn_every_n_layers={SHAPES[args.shape]['xattn_every']}",
        # A fresh checkpoint folder (autoresume stays on, as the spike guard needs); no checkpoint is written:
        # the saver is dropped below, the bench times training steps.
        f"max_duration={steps}ba", f"save_folder={checkpoints}",
        "eval_data=null",
        "loggers.jsonl=null", "loggers.wandb=null", "callbacks.captions=null", f"train_data.cache_root={args.work_dir}/cache",
        f"run_name=bench-{args.shape}-{world}gpu",
    ]
    raw = load_config(args.yaml, bench_overrides + overrides)
    trainer = build_trainer(raw)
    trainer.state.callbacks[:] = [c for c in trainer.state.callbacks if not isinstance(c, CheckpointSaver)]
    timer = StepTimer()
    trainer.state.callbacks.append(timer)
    profiler = StepProfiler(measured + 1, args.profile) if args.profile else None
    if profiler:
        trainer.state.callbacks.append(profiler)
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    before = local_copies(trainer.state.model) if args.check_params else None
    trainer.fit()
    gather_sample_ids(timer.rows)

    peak = get_gpu_flops_available(trainer.state) if torch.cuda.is_available() else None
    result = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "shape": args.shape,
              "yaml": args.yaml, "overrides": overrides, "command": " ".join(sys.argv), "versions": versions(),
              "auto_choices": validate(raw).auto_choices,
              "batch_per_gpu": {k: v["batch_size"] for k, v in src.items()},
              **summarize(timer.rows[:measured], args.warmup, world, peak),
              "fsdp_units": fsdp_units(trainer.state.model)}
    if before is not None:
        result["changed_params_rank0"] = changed_params(trainer.state.model, before)
    if torch.cuda.is_available():
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    if dist.get_global_rank() == 0:
        if profiler:
            stem = os.path.splitext(args.json)[0] if args.json else None
            result["profile_rank0"], tables = profiler.report(stem + ".trace.json.gz" if stem and args.trace else None)
            if stem:
                with open(stem + ".profile.txt", "w") as f:
                    f.write(tables)
        per_step = ("losses", "step_s", "images_per_step", "sample_ids", "changed_params_rank0", "profile_rank0")
        print(json.dumps({k: v for k, v in result.items() if k not in per_step}), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    trainer.close()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
