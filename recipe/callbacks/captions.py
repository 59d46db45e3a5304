"""A Composer callback that captions a fixed set of images every `interval` batches.

The captions go to every logger destination as a table (a W&B table when W&B is on, a JSONL record
otherwise) and, on rank 0, to the console. Every rank generates (under FSDP generation needs all
ranks); the images are the same everywhere, so the outputs are too.
"""

from __future__ import annotations

import contextlib
import os

import torch
from composer.core import Callback, Event, State, Time, TimeUnit
from composer.core.precision import get_precision_context
from composer.loggers import ConsoleLogger, Logger
from composer.utils import dist
from PIL import Image

from recipe.tokens import END_OF_CHUNK


def unwrap_flamingo(model: torch.nn.Module) -> torch.nn.Module:
    """The Flamingo child of the (possibly DDP-wrapped) ComposerModel."""
    return getattr(model, "module", model).model


class CaptionSamples(Callback):
    def __init__(self, images: list[str], tokenizer, image_transform, interval: str = "1000ba",
                 prompt: str = "<image>", max_new_tokens: int = 20, num_beams: int = 1, print_to_console=True):
        self.paths = list(images)
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.interval = Time.from_timestring(interval)
        if self.interval.unit != TimeUnit.BATCH:
            raise ValueError(f"captions interval must be in batches (ba), got {interval!r}")
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.print_to_console = print_to_console
        self._pixels = None

    def _vision_x(self) -> torch.Tensor:
        if self._pixels is None:
            pixels = [self.image_transform(Image.open(p).convert("RGB")) for p in self.paths]
            self._pixels = torch.stack(pixels).unsqueeze(1)  # (N, T=1, C, H, W)
        return self._pixels

    @torch.no_grad()
    def generate(self, state: State) -> list[str]:
        flamingo = unwrap_flamingo(state.model)
        device = next(flamingo.parameters()).device
        vision_x = self._vision_x().to(device)
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"  # generation continues the prompt
        try:
            enc = self.tokenizer([self.prompt] * len(self.paths), return_tensors="pt", padding=True)
        finally:
            self.tokenizer.padding_side = side
        eoc = self.tokenizer.convert_tokens_to_ids(END_OF_CHUNK)
        summon = contextlib.nullcontext()
        if type(flamingo).__name__ == "FullyShardedDataParallel":
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            summon = FSDP.summon_full_params(flamingo, writeback=False, recurse=False)
            flamingo = flamingo.module
        was_training = flamingo.training
        flamingo.eval()
        try:
            with summon, get_precision_context(state.precision):
                out = flamingo.generate(vision_x, enc["input_ids"].to(device), enc["attention_mask"].to(device),
                                        num_images=torch.ones(len(self.paths), dtype=torch.long, device=device),
                                        max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                        do_sample=False, eos_token_id=eoc,
                                        pad_token_id=self.tokenizer.pad_token_id)
        finally:
            flamingo.train(was_training)
        new = out[:, enc["input_ids"].shape[1]:]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BATCH_END:
            due = int(state.timestamp.batch) % self.interval.value == 0
        elif event == Event.FIT_END:
            due = int(state.timestamp.batch) % self.interval.value != 0  # the final model, if not just done
        else:
            return
        if not due:
            return
        captions = self.generate(state)
        rows = [[os.path.basename(p), c] for p, c in zip(self.paths, captions)]
        # Composer's console destination renders tables through pandas (not a dependency); we print instead.
        for destination in logger.destinations:
            if not isinstance(destination, ConsoleLogger):
                destination.log_table(["image", "caption"], rows, "captions", int(state.timestamp.batch))
        if self.print_to_console and dist.get_global_rank() == 0:
            print(f"[captions @ {int(state.timestamp.batch)}ba]")
            for name, caption in rows:
                print(f"  {name}: {caption}")
