"""Named training sources zipped into one batch per step, and their Composer DataSpecs.

A step's batch is `{source name: {input_ids, attention_mask, labels, images, num_images, sample_idx,
rejected}}`. Each source is one StreamingDataset (possibly mixing several Streams by proportion) with its own
per-device batch size. `MultiSourceDataset` runs inside each DataLoader worker: per step it takes exactly one
per-device batch from every source's worker-partitioned Streaming iterator, so step k holds per-device batch
k of every source. Streaming hands out batches to workers round-robin, and `DataLoader(batch_size=None)`
reads workers round-robin, so the sample order does not depend on the number of workers.

Resumption (Composer): `get_num_samples_in_batch` counts the samples of all sources, so Composer's
`sample_in_epoch` is steps x (sum of global batch sizes). `state_dict(num_samples, from_beginning)` turns it
back into steps and stores each source's own `StreamingDataset.state_dict(steps x its global batch, ...)`;
`load_state_dict` hands them back. Composer then skips spinning and every source restarts at the same step,
also with another number of ranks if the global batch sizes and `num_canonical_nodes` stay the same.

Epochs: a source's epoch has `epoch_size` samples (all of the data when unset); an epoch of the loader is
`min over sources of epoch_size // global batch` steps, after which all sources start their next epoch
together (the unused tail of a longer source's epoch is skipped).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as torch_dist
from composer.core import DataSpec
from streaming import Stream
from streaming.base.distributed import get_local_rank
from streaming.base.world import World
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from recipe.data.interleaved import InterleavedDataset
from recipe.data.pairs import PairsDataset
from recipe.data.shaping import ShapingDataset
from recipe.data.shm import clean_stale_shared_memory, register_owner
from recipe.data.text import ASSIGNMENTS
from recipe.tokens import IGNORE_INDEX

KINDS = {"pairs": PairsDataset, "interleaved": InterleavedDataset}
DEFAULT_MAX_TOKENS = {"pairs": 32, "interleaved": 256}


@dataclasses.dataclass
class StreamConfig:
    """One MDS dataset: `remote` is `s3://...` (or another Streaming URL) or a local path; `local` is the
    cache folder for a URL remote (derived under the cache root when unset)."""
    remote: str
    local: str | None = None
    proportion: float | None = None


@dataclasses.dataclass
class SourceConfig:
    """One named training source. `batch_size` is per device; `epoch_size` is global samples per epoch
    (None: the whole data); `loss_multiplier` is read by the loss, not the loader. The shaping fields apply
    to their kind (`max_images`... to interleaved); `max_tokens` defaults to 32 (pairs) / 256 (interleaved).
    `pad_to_max_tokens` (pairs) pads every batch to `max_tokens` instead of its longest caption: fixed
    shapes, so compiled blocks never see a new sequence length (interleaved batches always have it)."""
    kind: str
    batch_size: int
    streams: dict[str, StreamConfig]
    loss_multiplier: float = 1.0
    epoch_size: int | None = None
    max_tokens: int | None = None
    pad_to_max_tokens: bool = False
    max_images: int = 6
    min_images: int = 1
    sim_threshold: float = 0.24
    single_image_drop_prob: float = 0.5
    assignment: str = "one_to_one"
    min_image_bytes: int = 11_000
    shuffle: bool = True
    shuffle_seed: int = 9176
    num_canonical_nodes: int | None = None
    shuffle_block_size: int | None = None
    predownload: int | None = None
    cache_limit: int | str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.streams:
            raise ValueError("a source needs at least one stream")
        self.streams = {k: v if isinstance(v, StreamConfig) else StreamConfig(**v) for k, v in self.streams.items()}
        if self.max_tokens is None:
            self.max_tokens = DEFAULT_MAX_TOKENS[self.kind]
        if self.max_tokens < 4:
            raise ValueError(f"max_tokens must be >= 4 (room for <image>, text and <|endofchunk|>), got {self.max_tokens}")
        if not 1 <= self.min_images <= self.max_images:
            raise ValueError(f"need 1 <= min_images <= max_images, got min_images={self.min_images}, "
                             f"max_images={self.max_images}")
        if not 0.0 <= self.single_image_drop_prob <= 1.0:
            raise ValueError(f"single_image_drop_prob must be in [0, 1], got {self.single_image_drop_prob}")
        if not -1.0 <= self.sim_threshold <= 1.0:
            # The reference's default of 30 silently dropped every MMC4 image pair.
            raise ValueError(f"sim_threshold is a CLIP cosine similarity in [-1, 1], got {self.sim_threshold}")
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"unknown assignment {self.assignment!r}; expected one of {ASSIGNMENTS}")
        if self.min_image_bytes < 0 or self.loss_multiplier < 0:
            raise ValueError("min_image_bytes and loss_multiplier must be >= 0")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1 (or null for all samples), got {self.epoch_size}")
        for name, stream in self.streams.items():
            if stream.proportion is not None and stream.proportion <= 0:
                raise ValueError(f"streams.{name}.proportion must be > 0, got {stream.proportion}")


def _is_url(path: str) -> bool:
    return "://" in path


def default_cache_root() -> str:
    """A per-run cache folder, the same on every rank: `$TMPDIR/flamingo-cache/<run name>`."""
    run = os.environ.get("COMPOSER_RUN_NAME") or os.environ.get("RUN_NAME") or "default"
    return os.path.join(tempfile.gettempdir(), "flamingo-cache", run)


def build_source_dataset(name: str, cfg: SourceConfig, tokenizer, image_transform: Callable, *, seed: int,
                         cache_root: str, split: str = "train", shuffle: bool | None = None,
                         epoch_size: int | None = None, batch_size: int | None = None,
                         max_substitutions: int = 64) -> ShapingDataset:
    """The StreamingDataset subclass of one source. Local paths are read in place; URL remotes are cached
    in `stream.local` or `<cache_root>/<split>/<source>/<stream>`."""
    streams = []
    for stream_name, s in cfg.streams.items():
        weight = {} if s.proportion is None else {"proportion": s.proportion}
        if _is_url(s.remote):
            local = s.local or os.path.join(cache_root, split, name, stream_name)
            streams.append(Stream(remote=s.remote, local=local, **weight))
        else:
            streams.append(Stream(local=s.remote, **weight))
    shaping = dict(max_tokens=cfg.max_tokens)
    if cfg.kind == "pairs":
        shaping.update(pad_to_max_tokens=cfg.pad_to_max_tokens)
    if cfg.kind == "interleaved":
        shaping.update(max_images=cfg.max_images, min_images=cfg.min_images, sim_threshold=cfg.sim_threshold,
                       single_image_drop_prob=cfg.single_image_drop_prob, assignment=cfg.assignment,
                       min_image_bytes=cfg.min_image_bytes)
    dataset = KINDS[cfg.kind](
        tokenizer=tokenizer, image_transform=image_transform, seed=seed, max_substitutions=max_substitutions,
        streams=streams, batch_size=batch_size or cfg.batch_size,
        epoch_size=epoch_size if epoch_size is not None else cfg.epoch_size,
        shuffle=cfg.shuffle if shuffle is None else shuffle, shuffle_seed=cfg.shuffle_seed,
        num_canonical_nodes=cfg.num_canonical_nodes, shuffle_block_size=cfg.shuffle_block_size,
        predownload=cfg.predownload, cache_limit=cfg.cache_limit, **shaping)
    if get_local_rank() == 0:
        # Streaming keeps the prefix private; the owner record lets a later job clean up after a crash.
        register_owner(dataset._shm_prefix_int,
                       [os.path.abspath(os.path.join(s.local, s.split)) for s in dataset.streams])
    return dataset


class MultiSourceDataset(IterableDataset):
    """Zips one StreamingDataset per source into dict-of-sources batches (see the module docstring)."""

    def __init__(self, datasets: Mapping[str, ShapingDataset]):
        if not datasets:
            raise ValueError("need at least one source")
        self.datasets = dict(datasets)
        num_ranks = World.detect().num_ranks
        self.global_batch = {n: ds.batch_size * num_ranks for n, ds in self.datasets.items()}
        self.steps_per_epoch = min(ds.epoch_size // self.global_batch[n] for n, ds in self.datasets.items())
        if self.steps_per_epoch < 1:
            sizes = {n: (ds.epoch_size, self.global_batch[n]) for n, ds in self.datasets.items()}
            raise ValueError(f"an epoch has no full global batch for some source (epoch size, global batch): {sizes}")

    def __len__(self) -> int:
        return self.steps_per_epoch

    @property
    def rejection_reasons(self) -> dict[str, tuple[str, ...]]:
        """Per source, the reason names of the columns of its batches' `rejected` counts."""
        return {n: ds.REASONS for n, ds in self.datasets.items()}

    @property
    def samples_per_step(self) -> int:
        """Global samples of all sources in one step (what Composer adds to sample_in_epoch per step)."""
        return sum(self.global_batch.values())

    def __iter__(self) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        iters = {n: iter(ds) for n, ds in self.datasets.items()}
        # Starting every source's iterator (its first sample) runs Streaming's per-epoch setup, which
        # waits for all workers; afterwards each source knows where it resumed.
        first = {n: next(it, None) for n, it in iters.items()}
        starts = {n: ds.resumed_sample_in_epoch // self.global_batch[n] for n, ds in self.datasets.items()}
        if len(set(starts.values())) != 1:
            raise RuntimeError(f"sources resumed at different steps: {starts}")
        remaining = self.steps_per_epoch - next(iter(starts.values()))
        for _ in range(worker, remaining, num_workers):
            batch = {}
            for n, ds in self.datasets.items():
                samples = [first.pop(n)] if first.get(n) is not None else []
                samples += [s for _, s in zip(range(ds.batch_size - len(samples)), iters[n])]
                if len(samples) < ds.batch_size:
                    raise RuntimeError(f"source {n!r} ran out of samples before the end of the epoch")
                batch[n] = ds.collate(samples)
            yield batch

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """Composer calls this with its `sample_in_epoch` (all sources, all ranks) and True."""
        steps, extra = divmod(num_samples, self.samples_per_step)
        if extra:
            raise ValueError(f"{num_samples} samples is not a whole number of steps of {self.samples_per_step}")
        sources = {}
        for n, ds in self.datasets.items():
            state = ds.state_dict(steps * self.global_batch[n], from_beginning)
            if from_beginning and num_samples == 0:
                # At an epoch boundary Composer has reset sample_in_epoch while Streaming's epoch counter
                # still names the finished epoch; resume at the start of the next one instead of replaying.
                state["epoch"] = ds.next_epoch
            sources[n] = state
        return {"steps": steps, "sources": sources}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["sources"]) != set(self.datasets):
            raise ValueError(f"checkpoint has sources {sorted(state['sources'])}, config has {sorted(self.datasets)}")
        for n, ds in self.datasets.items():
            ds.load_state_dict(state["sources"][n])


def num_samples_in_batch(batch: Mapping[str, Mapping[str, torch.Tensor]]) -> int:
    return sum(int(b["input_ids"].shape[0]) for b in batch.values())


def num_tokens_in_batch(batch: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, int]:
    """Non-pad tokens (`total`) and trained tokens (`loss_generating`) over all sources."""
    return {"total": sum(int(b["attention_mask"].sum()) for b in batch.values()),
            "loss_generating": sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batch.values())}


def split_batch(batch: Mapping[str, Mapping[str, torch.Tensor]], microbatch_size: int | float,
                per_source: bool = False) -> list[dict]:
    """Split a step's batch into microbatches (Composer runs forward and backward once per microbatch).

    Mixed (default): `ceil(largest source batch / microbatch_size)` microbatches. Every source is cut into
    that many near-equal consecutive chunks (`torch.tensor_split`), and microbatch i holds chunk i of every
    source, so each microbatch keeps the step's source proportions. A source with fewer samples than chunks
    is left out of the microbatches whose chunk would be empty. When every source's batch size is divisible
    by the number of chunks, all microbatches have the same composition.

    `per_source`: each microbatch holds one source only; each source is cut into
    `ceil(its batch / microbatch_size)` near-equal chunks, sources in batch order. Each forward then runs
    the model once, so under FSDP every unit is gathered and released once per forward and backward;
    with both sources in one microbatch, FSDP keeps units that both passes use unsharded from the first
    pass's backward to the second's (most of the model).
    """
    if not isinstance(microbatch_size, int) or microbatch_size < 1:
        raise ValueError(f"device_train_microbatch_size must be a positive int, got {microbatch_size!r}")
    if per_source:
        out = []
        for name, b in batch.items():
            chunks = math.ceil(b["input_ids"].shape[0] / microbatch_size)
            parts = {k: torch.tensor_split(v, chunks) for k, v in b.items()}
            out += [{name: {k: p[i] for k, p in parts.items()}} for i in range(chunks)]
        return out
    chunks = math.ceil(max(b["input_ids"].shape[0] for b in batch.values()) / microbatch_size)
    split = {n: {k: torch.tensor_split(v, chunks) for k, v in b.items()} for n, b in batch.items()}
    out = []
    for i in range(chunks):
        mb = {n: {k: parts[i] for k, parts in s.items()} for n, s in split.items()}
        out.append({n: b for n, b in mb.items() if b["input_ids"].shape[0] > 0})
    return out


def _prepare_host(clean_stale_shm: bool) -> None:
    if clean_stale_shm and get_local_rank() == 0:
        clean_stale_shared_memory()
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def build_train_dataloader(sources: Mapping[str, SourceConfig | dict], tokenizer, image_transform: Callable, *,
                           seed: int, num_workers: int = 8, cache_root: str | None = None,
                           prefetch_factor: int | None = 2, pin_memory: bool | None = None,
                           clean_stale_shm: bool = True, max_substitutions: int = 64,
                           per_source_microbatches: bool = False) -> DataSpec:
    """The training DataSpec over `DataLoader(MultiSourceDataset, batch_size=None)`.

    Call after torch.distributed is initialized (Streaming runs collectives while building). `seed` seeds
    the per-sample randomness. `cache_root` holds the caches of URL remotes (default `default_cache_root()`);
    give each job its own. With `clean_stale_shm`, local rank 0 first removes Streaming shared memory left by
    dead processes (see recipe/data/shm.py). `per_source_microbatches`: see `split_batch`.
    """
    configs = {n: c if isinstance(c, SourceConfig) else SourceConfig(**c) for n, c in sources.items()}
    _prepare_host(clean_stale_shm)
    root = cache_root or default_cache_root()
    datasets = {n: build_source_dataset(n, c, tokenizer, image_transform, seed=seed, cache_root=root,
                                        max_substitutions=max_substitutions) for n, c in configs.items()}
    dataset = MultiSourceDataset(datasets)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers,
                        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
                        prefetch_factor=prefetch_factor if num_workers else None,
                        persistent_workers=num_workers > 0)
    return DataSpec(loader, split_batch=functools.partial(split_batch, per_source=per_source_microbatches),
                    get_num_samples_in_batch=num_samples_in_batch,
                    get_num_tokens_in_batch=num_tokens_in_batch)


class _SourceCollate:
    """Collates one source's samples into a `{name: batch}` dict (picklable for workers)."""

    def __init__(self, name: str, dataset: ShapingDataset):
        self.name, self.dataset = name, dataset

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
        return {self.name: self.dataset.collate(samples)}


def build_eval_dataloader(name: str, source: SourceConfig | dict, tokenizer, image_transform: Callable, *,
                          seed: int = 0, num_workers: int = 2, cache_root: str | None = None,
                          pin_memory: bool | None = None, max_substitutions: int = 64) -> DataSpec:
    """One unshuffled pass over a held-out source, batches shaped like training's `{name: batch}`.

    The last batch may be smaller. Across several ranks Streaming pads the partition by repeating a few
    samples, so the pass covers every sample at least once.
    """
    cfg = source if isinstance(source, SourceConfig) else SourceConfig(**source)
    root = cache_root or default_cache_root()
    dataset = build_source_dataset(name, cfg, tokenizer, image_transform, seed=seed, cache_root=root,
                                   split="eval", shuffle=False, epoch_size=0,  # 0: all of the data
                                   max_substitutions=max_substitutions)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=num_workers,
                        collate_fn=_SourceCollate(name, dataset), drop_last=False,
                        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
                        persistent_workers=num_workers > 0)
    return DataSpec(loader, split_batch=split_batch, get_num_samples_in_batch=num_samples_in_batch,
                    get_num_tokens_in_batch=num_tokens_in_batch)
