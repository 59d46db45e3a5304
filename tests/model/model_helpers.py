"""Builders shared by the model tests: our Flamingo and the reference OpenFlamingo over the same tiny backbones."""

import pytest
import stand_ins
import torch

from recipe.model import build_flamingo, export_openflamingo_checkpoint
from recipe.model.lm_adapters import let_lm_build_its_cache

# The reference infers these from the LM class name, except for families it does not know.
REF_DECODER_ATTR = {"mistral": "model.layers", "qwen2": "model.layers", "gpt2": "transformer.h"}


def randomize_trainable(model, seed=0, std=0.3):
    """Non-zero gates and random trainable weights, so every trainable part shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="session")
def build(vision_name, tokenizer_dir, lm_dir_factory):
    """`build(family, **kw)` -> (model, tokenizer) in eval mode."""
    def make(family="llama", **kw):
        model, tok, _ = build_flamingo(vision_name, None, lm_dir_factory(family), tokenizer_dir,
                                       trust_remote_code=family in stand_ins.REMOTE_LMS, **kw)
        return model.eval(), tok
    return make


@pytest.fixture(scope="session")
def build_reference(vision_name, tokenizer_dir, lm_dir_factory):
    """`build_reference(ours, family)` -> reference model holding our weights (through our export), seeing
    the same vision tokens (open_clip >= 2.23 would LayerNorm them in the reference's path). Its remote-code
    LMs get the same cache fix as ours: under transformers 4.57 their `generate` fails without it."""
    open_flamingo = pytest.importorskip("open_flamingo.src.factory")

    def make(ours, family="llama", cross_attn_every_n_layers=1, load_ours=True, **reference_kwargs):
        """`load_ours=False`: the reference's own weights as it builds them (only the vision tower is ours)."""
        ref, _, _ = open_flamingo.create_model_and_transforms(
            vision_name, None, lm_dir_factory(family), tokenizer_dir, use_local_files=True,
            cross_attn_every_n_layers=cross_attn_every_n_layers,
            decoder_layers_attr_name=REF_DECODER_ATTR.get(family), **reference_kwargs)
        if ours.lm_layout.legacy_cache:
            let_lm_build_its_cache(ref.lang_encoder)
        ref.vision_encoder.final_ln_after_pool = not ours.vision_encoder.final_ln
        ref.vision_encoder.load_state_dict(ours.vision_encoder.visual.state_dict())
        if load_ours:
            result = ref.load_state_dict(export_openflamingo_checkpoint(ours), strict=False)
            assert not result.unexpected_keys
        return ref.eval()
    return make


def laion_batch(tok, n_images=1):
    texts = ["<image>a photo of the red circle<|endofchunk|><|endoftext|>",
             "<image>blue square<|endofchunk|><|endoftext|>",
             "<image>the small green triangle on the left<|endofchunk|><|endoftext|>"]
    tok.padding_side = "right"
    ids = tok(texts, return_tensors="pt", padding=True)
    images = torch.randn(len(texts), 1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return images, ids.input_ids, ids.attention_mask, torch.ones(len(texts), dtype=torch.long)


def mmc4_batch(tok):
    """Several images per row, zero-padded image slots, text before the first <image>."""
    texts = ["some text first. <image>red circle<|endofchunk|><image>blue square<|endofchunk|><|endoftext|>",
             "<image>one image only, then words<|endofchunk|><|endoftext|>",
             "a b <image>x<|endofchunk|><image>y<|endofchunk|><image>z and more text<|endofchunk|><|endoftext|>"]
    tok.padding_side = "right"
    ids = tok(texts, return_tensors="pt", padding=True)
    num_images = torch.tensor([2, 1, 3])
    images = torch.randn(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    images[torch.arange(3).unsqueeze(0) >= num_images.unsqueeze(1)] = 0  # padding slots, as the loader fills them
    return images, ids.input_ids, ids.attention_mask, num_images
