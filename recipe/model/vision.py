"""Frozen open_clip vision tower that returns patch tokens the way the released OpenFlamingo models saw them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def load_open_clip_visual(name: str, pretrained: str | None = None):
    """Return (visual tower, val image transform, width) of an open_clip model; the text tower is dropped."""
    import open_clip

    clip, _, val_transform = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    visual = clip.visual
    if not hasattr(visual, "transformer") or not hasattr(visual.transformer, "resblocks"):
        raise ValueError(f"open_clip model {name!r} has no ViT visual tower (visual.transformer.resblocks)")
    return visual, val_transform, visual.transformer.width


class VisionBlock(nn.Module):
    """An open_clip `ResidualAttentionBlock` (self-attention, batch-first) with the same submodules and
    parameter names, whose attention calls SDPA on strided views of the packed q/k/v projection.

    `nn.MultiheadAttention` under autocast takes its slow path: it runs sequence-first (transposing the
    batch-first input) and copies the projection apart into q, k and v; in the compiled OF-3B step those
    copies took 17 ms of GPU time."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.ln_1, self.attn, self.ls_1 = block.ln_1, block.attn, block.ls_1
        self.ln_2, self.mlp, self.ls_2 = block.ln_2, block.mlp, block.ls_2

    @staticmethod
    def replaces(block: nn.Module) -> bool:
        from open_clip.transformer import ResidualAttentionBlock

        attn = getattr(block, "attn", None)
        return (type(block) is ResidualAttentionBlock and not hasattr(block, "ln_1_kv")
                and isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn._qkv_same_embed_dim
                and attn.bias_k is None and not attn.add_zero_attn)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        attn, (n, length, _) = self.attn, x.shape
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(n, length, 3, attn.num_heads, attn.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (N, heads, L, head_dim) each, no copies
        out = F.scaled_dot_product_attention(q, k, v)  # the tower runs in eval mode: no attention dropout
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError("VisionBlock runs unmasked self-attention (ViT towers pass no mask)")
        x = x + self.ls_1(self.attention(self.ln_1(x)))
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class VisionEncoder(nn.Module):
    """Wraps an open_clip `VisionTransformer` (its plain attention blocks become `VisionBlock`s): frozen by
    default (see `recipe.model.trainable` to train its last blocks), always in eval mode (no dropout / patch
    dropout), run without grad while nothing in it trains.

    Returns the patch tokens (CLS dropped, no projection). By default they are the raw last-block
    residual stream (open_clip <= 2.22 behaviour, which the released models were trained on);
    `final_ln=True` keeps open_clip >= 2.23's LayerNorm'd tokens instead.
    """

    def __init__(self, visual: nn.Module, final_ln: bool = False):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("vision towers with attentional pooling (CoCa) are not supported")
        self.visual = visual
        blocks = visual.transformer.resblocks
        if getattr(visual.transformer, "batch_first", False):
            for i, block in enumerate(blocks):
                if VisionBlock.replaces(block):
                    blocks[i] = VisionBlock(block)
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
