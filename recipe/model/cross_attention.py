"""Tanh-gated cross-attention from text tokens to the Perceiver latents of their most recent image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recipe.model.feed_forward import feed_forward


def media_attention_mask(media_index: torch.Tensor, num_media: int, latents_per_media: int):
    """Build the cross-attention mask once per LM call (shared by every block).

    media_index (B, L): 1-based index of the image each text token attends to, 0 for none.
    Returns (mask, has_media): mask (B, 1, L, num_media*latents_per_media) bool, True where the token may
    attend; has_media (B, L, 1) bool. Rows without an image (or pointing past the last image slot) attend
    everywhere (so SDPA never sees an all-masked row) and are zeroed afterwards through `has_media`.
    With one image slot every row attends everywhere: the mask is None, which lets SDPA use flash kernels.
    """
    has_media = (media_index > 0) & (media_index <= num_media)
    if num_media == 1:
        return None, has_media.unsqueeze(-1)
    key_media = torch.arange(1, num_media + 1, device=media_index.device).repeat_interleave(latents_per_media)
    mask = (media_index.unsqueeze(-1) == key_media) | ~has_media.unsqueeze(-1)
    return mask.unsqueeze(1), has_media.unsqueeze(-1)


class MaskedCrossAttention(nn.Module):
    """LayerNorm on the text stream only; queries from text, keys/values from media latents; no biases."""

    def __init__(self, dim: int, dim_visual: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, media: torch.Tensor, mask: torch.Tensor | None,
                has_media: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim); media (B, S, dim_visual) latents of all image slots; mask (B, 1, L, S) or None."""
        q = self.to_q(self.norm(x))
        k, v = self.to_kv(media.to(q.dtype)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).flatten(2) * has_media.to(out.dtype)
        return self.to_out(out)


class GatedCrossAttentionBlock(nn.Module):
    """x + tanh(attn_gate) * xattn(x) then x + tanh(ff_gate) * ff(x); both gates start at 0 (identity)."""

    def __init__(self, dim: int, dim_visual: int, heads: int = 8, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, heads, dim_head)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, media: torch.Tensor, mask: torch.Tensor | None,
                has_media: torch.Tensor) -> torch.Tensor:
        # Under autocast the residual stays in the LM's dtype (no full-size fp32 copies of the hidden
        # states); without it, run in the block's own dtype (e.g. an fp32 block inside a bf16 LM).
        lm_dtype = x.dtype
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.attn_gate.dtype)
        x = self.attn(x, media, mask, has_media) * self.attn_gate.tanh().to(x.dtype) + x
        x = self.ff(x) * self.ff_gate.tanh().to(x.dtype) + x
        return x.to(lm_dtype)
