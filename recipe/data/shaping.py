"""The StreamingDataset base of every training source: read a raw MDS sample, shape it into model inputs,
and substitute unusable samples deterministically.

Streaming precomputes the sample order, so a sample can't be skipped without breaking resumption
(streaming#759, #447). A sample the rules reject (or whose image can't be decoded) is instead replaced by
the next usable sample of the same stream (idx+1, idx+2, ..., wrapping inside the stream), up to
`max_substitutions` tries; each rejection is counted by reason in the sample's `rejected` vector.
Per-sample randomness comes from `numpy.random.default_rng((seed, epoch, sample_idx))`, so a resumed run
draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from streaming import StreamingDataset

from recipe.tokens import END_OF_CHUNK, IMAGE


class Reject(Exception):
    """Raised by `shape` when a sample is unusable; `reason` must be one of the dataset's REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def special_token_ids(tokenizer) -> tuple[int, int]:
    """(`<image>` id, `<|endofchunk|>` id); a clear error if the tokenizer lacks them or a pad token."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in (IMAGE, END_OF_CHUNK) if t not in vocab]
    if missing or tokenizer.pad_token_id is None or tokenizer.eos_token is None:
        raise ValueError(f"tokenizer needs {IMAGE}, {END_OF_CHUNK}, a pad and an eos token (missing: "
                         f"{missing or 'pad/eos'}); use the tokenizer returned by build_flamingo")
    return vocab[IMAGE], vocab[END_OF_CHUNK]


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes to RGB, or `Reject('undecodable_image')`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise Reject("undecodable_image") from err


class ShapingDataset(StreamingDataset):
    """Subclasses set REASONS, implement `shape(raw, rng) -> dict` and `collate(samples) -> dict`."""

    REASONS: tuple[str, ...] = ()

    def __init__(self, *, tokenizer, image_transform: Callable[[Image.Image], torch.Tensor], seed: int = 0,
                 max_substitutions: int = 64, **streaming_kwargs: Any):
        self.image_id, self.eoc_id = special_token_ids(tokenizer)  # fail before Streaming sets up shared memory
        super().__init__(**streaming_kwargs)
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.seed = seed
        self.max_substitutions = max_substitutions
        # Set in each iterating process by `_resume_incr_epoch`; 0 for direct indexing (inspection).
        self.current_epoch = 0
        self.resumed_sample_in_epoch = 0

    def _resume_incr_epoch(self) -> tuple[int, int]:
        # Streaming decides the epoch and resume offset here, once per __iter__ in each worker; we keep
        # them for the per-sample RNG and for MultiSourceDataset's step accounting.
        epoch, sample_in_epoch = super()._resume_incr_epoch()
        self.current_epoch, self.resumed_sample_in_epoch = epoch, sample_in_epoch
        return epoch, sample_in_epoch

    def shape(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _neighbour(self, idx: int, step: int) -> int:
        """The sample `step` places after `idx` inside idx's stream, wrapping around."""
        stream = int(np.searchsorted(self.sample_offset_per_stream, idx, side="right")) - 1
        start, size = int(self.sample_offset_per_stream[stream]), int(self.samples_per_stream[stream])
        return start + (idx - start + step) % size

    def get_raw(self, idx: int) -> dict[str, Any]:
        """The decoded MDS columns of sample `idx` (no shaping)."""
        return super().__getitem__(idx)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        rejected = np.zeros(len(self.REASONS), np.int64)
        for step in range(self.max_substitutions + 1):
            j = self._neighbour(int(idx), step)
            rng = np.random.default_rng((self.seed, self.current_epoch, j))
            try:
                out = self.shape(self.get_raw(j), rng)
            except Reject as r:
                rejected[self.REASONS.index(r.reason)] += 1
                continue
            out["sample_idx"] = j
            out["rejected"] = rejected
            return out
        counts = dict(zip(self.REASONS, rejected.tolist()))
        raise RuntimeError(f"{self.max_substitutions + 1} consecutive samples from index {idx} were unusable "
                           f"({counts}); check the filters and the data")
