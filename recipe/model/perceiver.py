"""Perceiver resampler: a fixed set of learned latents cross-attends to each image's patch tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recipe.model.feed_forward import feed_forward


class PerceiverAttention(nn.Module):
    """Latents attend to concat(media, latents); LayerNorm on both inputs; no biases."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """media (N, v, D), latents (N, n, D) -> (N, n, D) attention output (no residual)."""
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((media, latents), dim=1)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class PerceiverBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.attn = PerceiverAttention(dim, heads, dim_head)
        self.ff = feed_forward(dim, ff_mult)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.attn(media, latents) + latents
        return self.ff(latents) + latents


class PerceiverResampler(nn.Module):
    """Resamples each image independently to `num_latents` tokens (no media-time or frame embeddings,
    as in every released OpenFlamingo model)."""

    def __init__(self, dim: int, depth: int = 6, heads: int = 8, dim_head: int = 64, num_latents: int = 64,
                 ff_mult: int = 4):
        super().__init__()
        # Plain ints: under FSDP the parameters are sharded outside this module's forward.
        self.num_latents, self.dim = num_latents, dim
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(PerceiverBlock(dim, heads, dim_head, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        """media (N, v, D) patch tokens of N images -> (N, num_latents, D)."""
        media = media.to(self.latents.dtype)
        latents = self.latents.expand(media.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(media, latents)
        return self.norm(latents)
