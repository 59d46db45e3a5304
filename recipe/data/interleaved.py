"""Interleaved image-text documents (MMC4 and `fixed` documents such as the ChatGPT-generated set), shaped
as the reference does (similarity filter, at most `max_images` images, `max_tokens` tokens padded to
`max_tokens`, its rejection rules and label mask), with images in the order of their `<image>` tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recipe.data import text
from recipe.data.shaping import Reject, ShapingDataset, decode_image


class InterleavedDataset(ShapingDataset):
    """Reads the `interleaved` MDS schema.

    Rules for `mmc4` documents: images under `min_image_bytes` are invalid; the rest are matched to
    sentences (`assignment`) and pairs under `sim_threshold` dropped; after tokenization and truncation a
    document needs `min_images` surviving `<image>` tokens, single-image documents are dropped with
    probability `single_image_drop_prob`, and a document with no trained token is dropped (this covers the
    reference's "single image at the last position"). `fixed` documents skip the byte/similarity filter
    and the single-image drop. Only images whose `<image>` token survives truncation are decoded.
    """

    REASONS = ("small_images", "below_threshold", "too_few_images", "single_image_dropped",
               "no_target_tokens", "undecodable_image")

    def __init__(self, *, max_tokens: int = 256, max_images: int = 6, min_images: int = 1,
                 sim_threshold: float = 0.24, single_image_drop_prob: float = 0.5, assignment: str = "one_to_one",
                 min_image_bytes: int = 11_000, **kwargs: Any):
        if min_images < 1 or max_images < min_images:
            raise ValueError(f"need 1 <= min_images <= max_images, got {min_images}, {max_images}")
        if assignment not in text.ASSIGNMENTS:
            raise ValueError(f"unknown assignment {assignment!r}; expected one of {text.ASSIGNMENTS}")
        super().__init__(**kwargs)
        self.max_tokens = max_tokens
        self.max_images = max_images
        self.min_images = min_images
        self.sim_threshold = sim_threshold
        self.single_image_drop_prob = single_image_drop_prob
        self.assignment = assignment
        self.min_image_bytes = min_image_bytes

    def layout(self, raw: dict[str, Any]) -> tuple[str, list[int]]:
        """The document's text and the indices of its images in `<image>` order (before tokenization)."""
        eos = self.tokenizer.eos_token
        if raw["kind"] == "fixed":
            positions = [m["matched_text_index"] for m in raw["image_meta"]]
            return text.fixed_text(raw["texts"], positions, self.max_images, eos)
        if raw["kind"] != "mmc4":
            raise ValueError(f"document {raw['key']!r} has unknown kind {raw['kind']!r} (expected mmc4 or fixed)")
        valid = [i for i, size in enumerate(raw["image_sizes"]) if size >= self.min_image_bytes]
        if not valid:
            raise Reject("small_images")
        pairs = text.assign_images(raw["similarity"], valid, self.assignment, self.sim_threshold)
        if not pairs:
            raise Reject("below_threshold")
        return text.mmc4_text(raw["texts"], pairs, self.max_images, eos)

    def shape(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        doc, order = self.layout(raw)
        ids = self.tokenizer(doc, max_length=self.max_tokens, truncation=True)["input_ids"]
        n = ids.count(self.image_id)
        if n < self.min_images:
            raise Reject("too_few_images")
        if n == 1 and raw["kind"] == "mmc4" and rng.random() < self.single_image_drop_prob:
            raise Reject("single_image_dropped")
        mask = [1] * len(ids) + [0] * (self.max_tokens - len(ids))
        ids = ids + [self.tokenizer.pad_token_id] * (self.max_tokens - len(ids))
        labels = text.interleaved_labels(ids, mask, self.image_id, self.eoc_id)
        if all(t == text.IGNORE_INDEX for t in labels):
            raise Reject("no_target_tokens")
        ends = np.cumsum(raw["image_sizes"])
        blobs = [raw["images"][ends[k] - raw["image_sizes"][k]:ends[k]] for k in order[:n]]
        tensors = [self.image_transform(decode_image(b)) for b in blobs]
        images = torch.zeros((self.max_images, *tensors[0].shape), dtype=tensors[0].dtype)
        images[:n] = torch.stack(tensors)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "images": images, "num_images": n,
                "key": raw["key"], "image_order": order[:n]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        def ints(name):
            return torch.tensor([s[name] for s in samples], dtype=torch.int64)
        return {
            "input_ids": ints("input_ids"),
            "attention_mask": ints("attention_mask"),
            "labels": ints("labels"),
            "images": torch.stack([s["images"] for s in samples]),
            "num_images": ints("num_images"),
            "sample_idx": ints("sample_idx"),
            "rejected": torch.tensor(np.stack([s["rejected"] for s in samples]), dtype=torch.int64),
        }
