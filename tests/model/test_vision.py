"""The vision tower: old (un-normalised) patch tokens, frozen, eval-only, encodes real images only."""

import copy

import open_clip
import pytest
import torch

from recipe.model.vision import VisionBlock, VisionEncoder


def _raw_tokens(visual, images):
    """The last block's residual stream without ln_post, CLS dropped (open_clip <= 2.22 token output)."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    return visual.transformer(visual.ln_pre(x))[:, 1:]


def test_default_tokens_are_not_layernormed(build):
    model, _ = build("llama")
    images = torch.randn(3, 3, 32, 32)
    tokens = model.vision_encoder(images)
    assert tokens.shape == (3, 16, 64)  # 4x4 patches, CLS dropped, width 64, no projection
    raw = _raw_tokens(model.vision_encoder.visual, images)
    torch.testing.assert_close(tokens, raw)
    normed = model.vision_encoder.visual.ln_post(raw)
    assert (tokens - normed).abs().max() > 0.1


def test_vision_final_ln_keeps_new_open_clip_behaviour(build):
    model, _ = build("llama", vision_final_ln=True)
    images = torch.randn(2, 3, 32, 32)
    visual = model.vision_encoder.visual
    torch.testing.assert_close(model.vision_encoder(images), visual.ln_post(_raw_tokens(visual, images)))


def test_frozen_and_stays_in_eval(build):
    model, _ = build("llama")
    model.train()
    assert model.perceiver.training and model.lang_encoder.training
    assert not any(m.training for m in model.vision_encoder.modules())
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    out = model.vision_encoder(torch.randn(1, 3, 32, 32, requires_grad=True))
    assert not out.requires_grad


def test_encodes_only_real_images(build):
    model, _ = build("llama")
    seen = []
    hook = model.vision_encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        images = torch.randn(3, 4, 3, 32, 32)
        num_images = torch.tensor([1, 4, 2])
        latents = model.encode_images(images, num_images)
        assert seen == [7]  # 1 + 4 + 2 real slots, one call, padding never encoded
        # Same latents as encoding each row's real images alone.
        for b, n in enumerate(num_images.tolist()):
            alone = model.encode_images(images[b:b + 1, :n])
            torch.testing.assert_close(latents[b, :n], alone[0], rtol=1e-5, atol=1e-5)
            assert latents[b, n:].abs().sum() == 0
        seen.clear()
        none = model.encode_images(images, torch.zeros(3, dtype=torch.long))
        assert seen == [] and none.shape == (3, 4, 64, 64) and none.abs().sum() == 0
        # The reference's 6-D layout (B, T, 1, C, H, W) is accepted too.
        torch.testing.assert_close(model.encode_images(images.unsqueeze(2), num_images), latents)
    finally:
        hook.remove()


def test_wrapper_rejects_attention_pooled_towers():
    class Pooled(torch.nn.Module):
        attn_pool = torch.nn.Identity()

    with pytest.raises(ValueError, match="attentional pooling"):
        VisionEncoder(Pooled())


def test_vision_blocks_compute_what_open_clip_blocks_compute(vision_name):
    torch.manual_seed(0)
    original = open_clip.create_model(vision_name).visual.eval()
    encoder = VisionEncoder(copy.deepcopy(original))
    assert all(isinstance(b, VisionBlock) for b in encoder.resblocks)
    # Same parameter names and values: checkpoints and pretrained weights load unchanged.
    theirs, ours = original.state_dict(), encoder.visual.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    images = torch.randn(3, 3, 32, 32)
    x = torch.randn(3, 17, 64)
    for block, theirs_block in zip(encoder.resblocks, original.transformer.resblocks):
        torch.testing.assert_close(block(x), theirs_block(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(block(x), theirs_block(x), rtol=2e-2, atol=2e-2)
    original.output_tokens, original.final_ln_after_pool = True, True
    torch.testing.assert_close(encoder(images), original(images)[1])
    with pytest.raises(ValueError, match="unmasked"):
        encoder.resblocks[0](x, attn_mask=torch.zeros(17, 17))
