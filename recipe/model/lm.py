"""Insert gated cross-attention into a Hugging Face causal LM by composition.

Each decoder layer in the LM's layer `ModuleList` is replaced, in place, by a `FlamingoLayer` that owns
its optional `GatedCrossAttentionBlock` and the original layer. The image conditioning reaches the
blocks as call arguments, read from a `MediaConditioning` holder that a forward pre-hook on the LM fills
once per LM call (so HF `generate`, which calls the LM directly, is covered too).
"""

from __future__ import annotations

import torch
from torch import nn

from recipe.model.cross_attention import GatedCrossAttentionBlock, media_attention_mask


class MediaConditioning:
    """Plain-Python state shared by `Flamingo` and its `FlamingoLayer`s for the duration of one call.

    Registered as a forward pre-hook on the LM: from the call's `input_ids` it derives which image each
    token attends to (`cumsum(<image>)`: the latest preceding image, 0 before the first) and builds the
    cross-attention mask once for all blocks. While generating with a KV cache, a step without any
    `<image>` token attends to the last image of the prompt (OpenFlamingo's semantics). A call may carry
    each image row's tokens several times over (HF generate's beams, candidate classes in
    `recipe.eval.ranking`): row b's images and last image then serve rows b*k .. b*k+k-1.
    """

    def __init__(self, media_token_id: int):
        self.media_token_id = media_token_id
        self.clear()

    def clear(self) -> None:
        self.images = None           # (B, T, n, d) Perceiver output per image slot, as set
        self.latents = None          # the same, each row repeated to the current call's token rows
        self.generating = False
        self.last_media_index = None  # (B,) media index of the prompt's last token, for cached decoding
        self.media = self.mask = self.has_media = None

    def set_latents(self, latents: torch.Tensor, generating: bool = False) -> None:
        self.clear()
        self.images = self.latents = latents
        self.generating = generating

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        if self.latents is None:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise ValueError("Flamingo needs input_ids (not inputs_embeds) to locate <image> tokens")
        rows = input_ids.shape[0]
        if self.latents.shape[0] != rows:
            self.latents = _repeat_rows(self.images, rows)  # kept while the row count stays
        latents = self.latents
        is_media = input_ids == self.media_token_id
        if self.generating and self.last_media_index is not None and not is_media.any():
            media_index = _repeat_rows(self.last_media_index, rows).unsqueeze(1).expand_as(input_ids)
        else:
            media_index = is_media.cumsum(dim=1)
            if self.generating:
                self.last_media_index = media_index[:, -1]
        num_media, per_media = latents.shape[1], latents.shape[2]
        self.media = latents.flatten(1, 2)
        self.mask, self.has_media = media_attention_mask(media_index, num_media, per_media)
        return None


def _repeat_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Each row of `tensor` repeated in place (repeat_interleave) to make `rows` rows."""
    if rows % tensor.shape[0]:
        raise ValueError(f"batch of {rows} token rows does not match {tensor.shape[0]} image rows")
    return tensor.repeat_interleave(rows // tensor.shape[0], dim=0) if rows != tensor.shape[0] else tensor


class FlamingoLayer(nn.Module):
    """Runs the (optional) gated cross-attention block, then the original decoder layer with the LM's
    own arguments untouched. Attributes the LM reads off its layers (e.g. Qwen2's `attention_type`)
    resolve to the original layer."""

    def __init__(self, decoder_layer: nn.Module, gated_cross_attn_layer: GatedCrossAttentionBlock | None,
                 conditioning: MediaConditioning):
        super().__init__()
        self.gated_cross_attn_layer = gated_cross_attn_layer
        self.decoder_layer = decoder_layer
        self.conditioning = conditioning

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("decoder_layer"), name)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.gated_cross_attn_layer is not None:
            c = self.conditioning
            if c.media is None:
                raise RuntimeError("cross-attention layer called without media; call it through Flamingo")
            hidden_states = self.gated_cross_attn_layer(hidden_states, c.media, c.mask, c.has_media)
        return self.decoder_layer(hidden_states, *args, **kwargs)


def insert_cross_attention(lm: nn.Module, conditioning: MediaConditioning, layers_path: str, dim: int,
                           dim_visual: int, cross_attn_every_n_layers: int = 1,
                           **block_kwargs) -> tuple[list[nn.Module], list[GatedCrossAttentionBlock]]:
    """Wrap every decoder layer in `lm.<layers_path>` in a `FlamingoLayer`; a block of width `dim` goes
    before layer i when (i + 1) % cross_attn_every_n_layers == 0. Returns (original layers, blocks)."""
    if cross_attn_every_n_layers < 1:
        raise ValueError("cross_attn_every_n_layers must be >= 1")
    layers = lm.get_submodule(layers_path)
    if any(isinstance(layer, FlamingoLayer) for layer in layers):
        raise ValueError(f"{type(lm).__name__} already has Flamingo layers at {layers_path!r}")
    originals, blocks = list(layers), []
    for i, layer in enumerate(originals):
        block = None
        if (i + 1) % cross_attn_every_n_layers == 0:
            block = GatedCrossAttentionBlock(dim, dim_visual, **block_kwargs)
            blocks.append(block)
        layers[i] = FlamingoLayer(layer, block, conditioning)
    return originals, blocks
