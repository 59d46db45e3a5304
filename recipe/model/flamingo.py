"""Flamingo: frozen vision tower -> trainable Perceiver -> frozen LM with trainable gated cross-attention."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from recipe.model.cross_attention import GatedCrossAttentionBlock
from recipe.model.embeddings import token_modules
from recipe.model.lm import MediaConditioning, insert_cross_attention
from recipe.model.lm_adapters import LMLayout
from recipe.model.perceiver import PerceiverResampler
from recipe.model.vision import VisionEncoder


class Flamingo(nn.Module):
    """`lang_encoder` must already carry the added-token embeddings (`embeddings.add_token_embeddings`);
    `lm_layout` says where its parts are (`lm_adapters.describe_lm`).

    Parameter names (for optimizer groups): `perceiver.*`; `lang_encoder.<layers>.<i>.gated_cross_attn_layer.*`;
    `*.new_token_weight` / `*.new_token_bias` (added-token rows). `build_flamingo` freezes everything else
    (the vision tower freezes itself).
    """

    def __init__(self, vision_encoder: VisionEncoder, lang_encoder: nn.Module, media_token_id: int,
                 eoc_token_id: int, lm_layout: LMLayout, cross_attn_every_n_layers: int = 1,
                 perceiver_kwargs: dict | None = None, cross_attn_kwargs: dict | None = None):
        super().__init__()
        self.media_token_id = media_token_id
        self.eoc_token_id = eoc_token_id
        self.vision_encoder = vision_encoder
        self.perceiver = PerceiverResampler(vision_encoder.width, **(perceiver_kwargs or {}))
        self.lang_encoder = lang_encoder
        self.lm_layout = lm_layout
        self.decoder_layers_attr = lm_layout.decoder_layers
        self.vocab_size = token_modules(lang_encoder)[1].num_embeddings
        self.conditioning = MediaConditioning(media_token_id)
        self._decoder_layers, self._xattn_blocks = insert_cross_attention(
            lang_encoder, self.conditioning, lm_layout.decoder_layers, lm_layout.hidden_size, vision_encoder.width,
            cross_attn_every_n_layers, **(cross_attn_kwargs or {}))
        self._vision_blocks = vision_encoder.resblocks
        lang_encoder.register_forward_pre_hook(self.conditioning, with_kwargs=True)

    @property
    def decoder_layers(self) -> list[nn.Module]:
        """The LM's original decoder layers (each now inside a FlamingoLayer)."""
        return list(self._decoder_layers)

    @property
    def cross_attn_blocks(self) -> list[GatedCrossAttentionBlock]:
        return list(self._xattn_blocks)

    def encode_images(self, vision_x: torch.Tensor, num_images: torch.Tensor | None = None) -> torch.Tensor:
        """vision_x (B, T, C, H, W) or (B, T, 1, C, H, W) -> Perceiver latents (B, T, n, d).

        Only the first `num_images[b]` slots of each row are encoded; the other slots stay zero (no
        vision or Perceiver work is spent on padding).
        """
        if vision_x.ndim == 6:
            if vision_x.shape[2] != 1:
                raise ValueError(f"only single-frame media are supported, got F={vision_x.shape[2]}")
            vision_x = vision_x.squeeze(2)
        if vision_x.ndim != 5:
            raise ValueError(f"vision_x must be (B, T, C, H, W) or (B, T, 1, C, H, W), got {tuple(vision_x.shape)}")
        b, t = vision_x.shape[:2]
        slots = vision_x.flatten(0, 1)
        if num_images is None:
            return self.perceiver(self.vision_encoder(slots)).unflatten(0, (b, t))
        real = torch.arange(t, device=vision_x.device) < num_images.to(vision_x.device).unsqueeze(1)
        index = real.flatten().nonzero().squeeze(1)  # the pass's one host sync: the image count sets shapes
        # No reads of Perceiver parameters here: FSDP only unshards them inside its forward.
        if index.numel() == 0:
            return vision_x.new_zeros(b, t, self.perceiver.num_latents, self.perceiver.dim)
        latents = self.perceiver(self.vision_encoder(slots.index_select(0, index)))
        return latents.new_zeros(b * t, *latents.shape[1:]).index_copy(0, index, latents).unflatten(0, (b, t))

    def forward(self, vision_x: torch.Tensor, lang_x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                num_images: torch.Tensor | None = None, past_key_values=None, use_cache: bool = False):
        """Returns the LM's `CausalLMOutputWithPast` (logits over the base vocab + added tokens).

        Each token cross-attends to the latest `<image>` at or before it within `lang_x`; tokens before
        the first `<image>` get no attention output (the FFN half of each block still applies)."""
        self.conditioning.set_latents(self.encode_images(vision_x, num_images))
        try:
            out = self.lang_encoder(input_ids=lang_x, attention_mask=attention_mask,
                                    past_key_values=past_key_values, use_cache=use_cache)
        finally:
            self.conditioning.clear()
        if out.logits.shape[-1] != self.vocab_size:  # a head we did not find would drop the added tokens
            raise RuntimeError(f"{type(self.lang_encoder).__name__} returned {out.logits.shape[-1]} logits for "
                               f"{self.vocab_size} tokens; set model.lm_head_attr to its output head")
        return out

    def generate(self, vision_x: torch.Tensor, lang_x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 num_images: torch.Tensor | None = None, **generate_kwargs) -> torch.Tensor:
        """HF `generate` on the wrapped LM (KV cache, greedy / beam / sampling); prompts must be left-padded.

        Images are encoded once and repeated per beam / returned sequence; stops at `<|endofchunk|>`
        unless `eos_token_id` is given. Returns prompt + generated ids, as HF does."""
        generate_kwargs.setdefault("eos_token_id", self.eoc_token_id)
        with self.cached_media(vision_x, num_images):
            return self.lang_encoder.generate(input_ids=lang_x, attention_mask=attention_mask, **generate_kwargs)

    @contextmanager
    def cached_media(self, vision_x: torch.Tensor, num_images: torch.Tensor | None = None):
        """Images encoded once for several calls of `lang_encoder` that continue one another through its KV
        cache (`generate`, `recipe.eval.ranking`): a call without `<image>` tokens attends to the last image
        of the first call's rows; a call may repeat each row (see `MediaConditioning`)."""
        with torch.no_grad():
            latents = self.encode_images(vision_x, num_images)
        self.conditioning.set_latents(latents, generating=True)
        try:
            yield
        finally:
            self.conditioning.clear()

    def compile_blocks(self, cuda_graphs: bool = False) -> None:
        """`torch.compile` each repeated block in place (vision blocks, Perceiver, original decoder layers,
        xattn blocks): fuses their norms, gates and activations. Wrappers and the HF LM stay eager, so
        FSDP wrapping, activation checkpointing and `generate` see the same module tree.

        `cuda_graphs`: the decoder layers and xattn blocks also replay as CUDA graphs, one per token shape
        (`dynamic=False`). The vision blocks and the Perceiver see a varying image count and stay without."""
        for module in (*self._vision_blocks, self.perceiver):
            module.compile()
        lm_kwargs = {"dynamic": False, "options": {"triton.cudagraphs": True}} if cuda_graphs else {}
        for module in (*self._decoder_layers, *self._xattn_blocks):
            module.compile(**lm_kwargs)

    def fsdp_wrap_fn(self, module: nn.Module) -> bool:
        """FSDP units: each vision block, each original decoder layer, each xattn block, the Perceiver.

        Each unit is all-frozen or all-trainable. The root unit keeps the rest (vision stem, LM
        embeddings + added-token rows, final norms): it mixes frozen and trainable parameters, which
        FSDP accepts with `use_orig_params=True` (Composer's default)."""
        return (isinstance(module, (GatedCrossAttentionBlock, PerceiverResampler))
                or any(module is m for m in self._decoder_layers)
                or any(module is m for m in self._vision_blocks))

    def activation_checkpointing_fn(self, module: nn.Module) -> bool:
        """Recompute the original decoder layers and the xattn blocks (not their FlamingoLayer wrapper)."""
        return isinstance(module, GatedCrossAttentionBlock) or any(module is m for m in self._decoder_layers)
