"""Model FLOPs of one training batch, aware of which parts train (for SpeedMonitor's MFU).

Counted per real image and per real (attention-masked) token, with matmul FLOPs = 2 × params × tokens.
Each block (vision block, Perceiver, cross-attention block, decoder layer, output head) in data-flow order
costs its forward (2·N) plus a backward for activations (2·N) when anything upstream of it, or the block
itself, trains, plus a backward for weights (2·N) when it trains: 2·N frozen with nothing trainable before
it (the frozen vision prefix, layers before the first trainable part), 4·N frozen behind trainable parts,
6·N trainable. Parameter-free attention (4·tokens²·width per layer forward) costs ×3 when a backward runs.
- vision: the stem (patch embedding, norms) is always frozen; patch tokens + class token through the blocks;
- Perceiver: its `to_kv` sees patch tokens + latents, the rest only the latents;
- gated cross-attention: `to_kv` runs on the image latents, the rest per text token, attention
  4·(real images·latents)·inner per token; its output depends on the media, so a trainable vision suffix or
  Perceiver makes every later layer run a backward;
- embedding lookups cost nothing; the output head is a matmul over the whole vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from recipe.model.embeddings import token_modules
from recipe.model.flamingo import Flamingo
from recipe.model.lm import FlamingoLayer
from recipe.model.perceiver import PerceiverResampler
from recipe.model.vision import VisionEncoder


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class FlopsCounter:
    def __init__(self, flamingo: nn.Module):
        from transformers import PreTrainedModel

        def first(cls):
            return next((m for m in flamingo.modules() if isinstance(m, cls)), None)

        vision, perceiver, lm = first(VisionEncoder), first(PerceiverResampler), first(PreTrainedModel)
        layers = [m for m in flamingo.modules() if isinstance(m, FlamingoLayer)]
        if vision is None or perceiver is None or lm is None or not layers:
            raise ValueError("FlopsCounter: the model lacks a vision encoder, perceiver or Flamingo LM layers")

        def trains(module) -> bool:
            return any(p.requires_grad for p in module.parameters())

        def factors(upstream: bool, module) -> tuple[float, float]:
            """(matmul, attention) multipliers of `module`'s forward FLOPs; the weight-gradient share is
            its trainable fraction (the output head trains only its added-token rows by default)."""
            n = _numel(module)
            frac = sum(p.numel() for p in module.parameters() if p.requires_grad) / max(n, 1)
            backward = upstream or frac > 0
            return 1 + backward + frac, 3.0 if backward else 1.0

        # Vision: patch tokens (+1 class token) through the blocks; the stem runs forward only.
        visual = vision.visual
        grid = getattr(visual, "grid_size", None)
        self.vis_tokens = t = int(grid[0] * grid[1]) + 1
        vis_blocks = vision.resblocks
        per_image = 2 * (_numel(vision) - sum(_numel(b) for b in vis_blocks)) * t
        grad = False  # does the activation flowing at this point require grad?
        for block in vis_blocks:
            mm, att = factors(grad, block)
            per_image += mm * 2 * _numel(block) * t + att * 4 * t ** 2 * vision.width
            grad = grad or trains(block)

        # Perceiver: latents attend to concat(patch tokens, latents).
        n_lat = perceiver.num_latents
        media = t - 1
        kv = sum(_numel(layer.attn.to_kv) for layer in perceiver.layers)
        inner = sum(layer.attn.to_q.out_features for layer in perceiver.layers)
        mm, att = factors(grad, perceiver)
        per_image += mm * (2 * kv * (media + n_lat) + 2 * (_numel(perceiver) - kv) * n_lat) \
            + att * 4 * n_lat * (media + n_lat) * inner
        media_grad = grad or trains(perceiver)
        self.num_latents = n_lat
        self.per_image = per_image

        # LM: the input embedding is a lookup; then per layer the xattn block and the original layer.
        hidden = first(Flamingo).lm_layout.hidden_size
        _, emb, _, head = token_modules(lm)
        grad = trains(emb)
        self.per_token = self.per_latent = self.per_token_image = self.per_token_sq = 0.0
        for layer in layers:
            block = layer.gated_cross_attn_layer
            if block is not None:
                mm, att = factors(grad or media_grad, block)
                xkv = _numel(block.attn.to_kv)
                self.per_token += mm * 2 * (_numel(block) - xkv)
                self.per_latent += mm * 2 * xkv
                self.per_token_image += att * 4 * block.attn.to_q.out_features * n_lat
                grad = grad or media_grad or trains(block)
            mm, att = factors(grad, layer.decoder_layer)
            self.per_token += mm * 2 * _numel(layer.decoder_layer)
            self.per_token_sq += att * 4 * hidden
            grad = grad or trains(layer.decoder_layer)
        head = emb if head is None else head  # no head module: the logits come from the embedding matrix
        mm, _ = factors(grad, head)
        self.per_token += mm * 2 * _numel(head)

    def __call__(self, batch) -> float:
        total = 0.0
        for b in batch.values():
            lengths = b["attention_mask"].sum(dim=1).to(torch.float64)
            images = b["num_images"].to(torch.float64)
            n_images = images.sum().item()
            total += n_images * (self.per_image + self.per_latent * self.num_latents)
            total += self.per_token * lengths.sum().item() + self.per_token_sq * (lengths ** 2).sum().item()
            total += self.per_token_image * (lengths * images).sum().item()
        return total
