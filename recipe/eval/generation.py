"""Batched few-shot generation as the reference's eval model runs it: left-padded prompts, each example's
images in prompt order, beam search, the new tokens decoded without special tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def prepare_batch(model, tokenizer, image_transform, texts: Sequence[str], images: Sequence[Sequence]):
    """(input_ids, attention_mask, vision_x, num_images) on the model's device, prompts left-padded (their ends
    line up, for what follows them). `images[i]`: PIL images of prompt i, one per `<image>` in its text."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    enc = tokenizer(list(texts), padding="longest", return_tensors="pt").to(device)
    slots = max(len(imgs) for imgs in images)
    pixels = [[image_transform(img) for img in imgs] for imgs in images]
    vision_x = torch.zeros(len(texts), slots, *pixels[0][0].shape)
    for i, row in enumerate(pixels):
        for j, px in enumerate(row):
            vision_x[i, j] = px
    num_images = torch.tensor([len(imgs) for imgs in images], device=device)
    return enc.input_ids, enc.attention_mask, vision_x.to(device), num_images


def generate(model, tokenizer, image_transform, texts: Sequence[str], images: Sequence[Sequence],
             max_new_tokens: int, num_beams: int = 3, length_penalty: float = 0.0,
             autocast_dtype: torch.dtype | None = None) -> list[str]:
    """One continuation per prompt. `images[i]`: PIL images of prompt i, one per `<image>` in its text."""
    input_ids, attention_mask, vision_x, num_images = prepare_batch(model, tokenizer, image_transform, texts, images)
    device = input_ids.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                                enabled=autocast_dtype is not None):
        beams = {"num_beams": num_beams, "length_penalty": length_penalty} if num_beams > 1 else {}
        out = model.generate(vision_x, input_ids, attention_mask, num_images=num_images,
                             max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, **beams)
    return tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
