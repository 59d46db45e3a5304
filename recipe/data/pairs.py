"""Image-caption pairs (LAION and own captioned data): `<image>caption<|endofchunk|>eos`, one image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recipe.data import text
from recipe.data.shaping import Reject, ShapingDataset, decode_image
from recipe.tokens import IGNORE_INDEX


def pad_right(rows: list[list[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


class PairsDataset(ShapingDataset):
    """Reads the `pairs` MDS schema; a batch is padded (right) to its longest caption, at most
    `max_tokens` tokens (long captions lose their end-of-chunk/eos, as in the reference), or always to
    `max_tokens` with `pad_to_max_tokens`."""

    REASONS = ("empty_caption", "undecodable_image")

    def __init__(self, *, max_tokens: int = 32, pad_to_max_tokens: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_tokens = max_tokens
        self.pad_to_max_tokens = pad_to_max_tokens

    def shape(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        caption = raw["caption"]
        if not caption.strip():
            raise Reject("empty_caption")
        image = self.image_transform(decode_image(raw["image"]))
        ids = self.tokenizer(text.pair_text(caption, self.tokenizer.eos_token), max_length=self.max_tokens,
                             truncation=True)["input_ids"]
        return {"input_ids": ids, "labels": text.pair_labels(ids, self.image_id), "images": image[None],
                "num_images": 1, "key": raw["key"]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = self.max_tokens if self.pad_to_max_tokens else max(len(s["input_ids"]) for s in samples)
        ids = pad_right([s["input_ids"] for s in samples], length, self.tokenizer.pad_token_id)
        mask = pad_right([[1] * len(s["input_ids"]) for s in samples], length, 0)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": pad_right([s["labels"] for s in samples], length, IGNORE_INDEX),
            "images": torch.stack([s["images"] for s in samples]),
            "num_images": torch.tensor([s["num_images"] for s in samples], dtype=torch.int64),
            "sample_idx": torch.tensor([s["sample_idx"] for s in samples], dtype=torch.int64),
            "rejected": torch.tensor(np.stack([s["rejected"] for s in samples]), dtype=torch.int64),
        }
