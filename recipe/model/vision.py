"""Frozen open_clip vision tower that returns patch tokens the way the released OpenFlamingo models saw them."""

from __future__ import annotations

import torch
from torch import nn


def load_open_clip_visual(name: str, pretrained: str | None = None):
    """Return (visual tower, val image transform, width) of an open_clip model; the text tower is dropped."""
    import open_clip

    clip, _, val_transform = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    visual = clip.visual
    if not hasattr(visual, "transformer") or not hasattr(visual.transformer, "resblocks"):
        raise ValueError(f"open_clip model {name!r} has no ViT visual tower (visual.transformer.resblocks)")
    return visual, val_transform, visual.transformer.width


class VisionEncoder(nn.Module):
    """Wraps an open_clip `VisionTransformer`: frozen by default (see `recipe.model.trainable` to train its last
    blocks), always in eval mode (no dropout / patch dropout), run without grad while nothing in it trains.

    Returns the patch tokens (CLS dropped, no projection). By default they are the raw last-block
    residual stream (open_clip <= 2.22 behaviour, which the released models were trained on);
    `final_ln=True` keeps open_clip >= 2.23's LayerNorm'd tokens instead.
    """

    def __init__(self, visual: nn.Module, final_ln: bool = False):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("vision towers with attentional pooling (CoCa) are not supported")
        self.visual = visual
        # With final_ln_after_pool=True open_clip applies ln_post to the pooled vector only.
        self.visual.final_ln_after_pool = not final_ln
        self.visual.output_tokens = True
        self.final_ln = final_ln
        self.width = visual.transformer.width
        self.requires_grad_(False)
        super().train(False)

    @property
    def resblocks(self) -> list[nn.Module]:
        return list(self.visual.transformer.resblocks)

    def train(self, mode: bool = True):
        # Frozen tower: dropout / patch-dropout must never switch on with the parent's .train().
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) -> patch tokens (N, num_patches, width).

        With trainable last blocks autograd records only from the first trainable block on: the input is
        detached and the frozen prefix's weights need no grad, so the prefix keeps no activations."""
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        with torch.set_grad_enabled(trains):
            _, tokens = self.visual(images.detach().to(self.visual.conv1.weight.dtype))
        return tokens
