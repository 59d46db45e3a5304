"""Model FLOPs of one training batch, aware of which parts are frozen (for SpeedMonitor's MFU).

Counted per real image and per real (attention-masked) token, with matmul FLOPs = 2 × params × tokens:
- frozen vision encoder: forward only, 2·N_vis per patch token + self-attention 4·layers·tokens²·width;
- Perceiver (trained): forward ×3 (forward + backward for activations and weights); its `to_kv` sees
  patch tokens + latents, the rest only the latents;
- gated cross-attention (trained): ×3; `to_kv` runs on the image latents, the rest per text token,
  attention 4·(real images·latents)·inner per token;
- frozen LM decoder layers and output head: 2·N forward plus 2·N backward for activations (4·N per
  token), except layers before the first cross-attention block, which get no backward (2·N);
  self-attention 4·L²·hidden per layer forward, ×3 where a backward runs;
- other trainable parameters (new token embeddings): 6·N per token (negligible).
"""

from __future__ import annotations

import torch
from torch import nn


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class FlopsCounter:
    def __init__(self, flamingo: nn.Module):
        from transformers import PreTrainedModel

        from recipe.model.cross_attention import GatedCrossAttentionBlock
        from recipe.model.lm import FlamingoLayer
        from recipe.model.perceiver import PerceiverResampler
        from recipe.model.vision import VisionEncoder

        def first(cls):
            return next((m for m in flamingo.modules() if isinstance(m, cls)), None)

        vision, perceiver, lm = first(VisionEncoder), first(PerceiverResampler), first(PreTrainedModel)
        layers = [m for m in flamingo.modules() if isinstance(m, FlamingoLayer)]
        blocks = [m for m in flamingo.modules() if isinstance(m, GatedCrossAttentionBlock)]
        if vision is None or perceiver is None or lm is None or not layers:
            raise ValueError("FlopsCounter: the model lacks a vision encoder, perceiver or Flamingo LM layers")

        # Vision: patch tokens (+1 class token) through `layers` blocks of `width`.
        visual = vision.visual
        grid = getattr(visual, "grid_size", None)
        self.vis_tokens = int(grid[0] * grid[1]) + 1
        self.vision_fwd_per_image = (2 * _numel(vision) * self.vis_tokens
                                     + 4 * len(vision.resblocks) * self.vis_tokens ** 2 * vision.width)

        # Perceiver: latents attend to concat(patch tokens, latents).
        n_lat = perceiver.num_latents
        media = self.vis_tokens - 1
        kv = sum(_numel(layer.attn.to_kv) for layer in perceiver.layers)
        inner = sum(layer.attn.to_q.out_features for layer in perceiver.layers)
        rest = _numel(perceiver) - kv
        self.num_latents = n_lat
        self.perceiver_fwd_per_image = 2 * kv * (media + n_lat) + 2 * rest * n_lat + 4 * n_lat * (media + n_lat) * inner

        # Cross-attention blocks: per text token, per image latent, and attention.
        xkv = sum(_numel(b.attn.to_kv) for b in blocks)
        self.xattn_per_token = 2 * (sum(_numel(b) for b in blocks) - xkv)
        self.xattn_per_latent = 2 * xkv
        self.xattn_inner = sum(b.attn.to_q.out_features for b in blocks)

        # Frozen LM: decoder layers (without the blocks) and the output head.
        hidden = lm.config.hidden_size
        first_block = next(i for i, layer in enumerate(layers) if layer.gated_cross_attn_layer is not None) \
            if blocks else len(layers)
        per_layer = [_numel(layer.decoder_layer) for layer in layers]
        self.lm_fwd_only = 2 * sum(per_layer[:first_block])
        self.lm_fwd_bwd = 4 * (sum(per_layer[first_block:]) + _numel(lm.get_output_embeddings()))
        self.attn_fwd_only = 4 * first_block * hidden
        self.attn_fwd_bwd = 3 * 4 * (len(layers) - first_block) * hidden

        counted = {id(p) for m in (vision, perceiver, *blocks) for p in m.parameters()}
        self.other_trainable = sum(p.numel() for p in flamingo.parameters()
                                   if p.requires_grad and id(p) not in counted)

    def __call__(self, batch) -> float:
        total = 0.0
        for b in batch.values():
            lengths = b["attention_mask"].sum(dim=1).to(torch.float64)
            images = b["num_images"].to(torch.float64)
            tokens, tokens_sq = lengths.sum().item(), (lengths ** 2).sum().item()
            n_images = images.sum().item()
            total += n_images * (self.vision_fwd_per_image + 3 * self.perceiver_fwd_per_image)
            total += 3 * (self.xattn_per_token * tokens + self.xattn_per_latent * n_images * self.num_latents
                          + 4 * self.xattn_inner * self.num_latents * (lengths * images).sum().item())
            total += (self.lm_fwd_only + self.lm_fwd_bwd + 6 * self.other_trainable) * tokens
            total += (self.attn_fwd_only + self.attn_fwd_bwd) * tokens_sq
        return total
