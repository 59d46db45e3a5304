"""Flamingo semantics: gates at 0, masking, trainable set, FSDP / activation-checkpointing selection."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from model_helpers import mmc4_batch, randomize_trainable
from recipe.model.cross_attention import GatedCrossAttentionBlock, media_attention_mask
from recipe.model.embeddings import AddedTokenEmbedding, AddedTokenHead
from recipe.model.lm import FlamingoLayer


def _is_trainable_name(name):
    return name.startswith("perceiver.") or ".gated_cross_attn_layer." in name or name.endswith(
        ("new_token_weight", "new_token_bias"))


@pytest.mark.parametrize("family", ["llama", "mpt"])
def test_gates_at_zero_equal_the_bare_lm(build, lm_dir_factory, family):
    model, tok = build(family)
    base_v = model.lang_encoder.get_input_embeddings().base_vocab_size
    bare = AutoModelForCausalLM.from_pretrained(lm_dir_factory(family)).eval()
    ids = tok(["a photo of the red circle", "blue square on the left"], return_tensors="pt", padding=True)
    images = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        got = model(images, ids.input_ids, ids.attention_mask).logits
        # <PAD> is an added token the bare LM lacks; right padding never influences real positions.
        want = bare(input_ids=ids.input_ids.masked_fill(ids.attention_mask == 0, 0),
                    attention_mask=ids.attention_mask).logits
    real = ids.attention_mask.bool()
    torch.testing.assert_close(got[real][:, :base_v], want[real][:, :base_v], rtol=0, atol=1e-6)
    # With <image> tokens in the text, images still make no difference while the gates are 0.
    images, ids, mask, n = mmc4_batch(tok)
    with torch.no_grad():
        a = model(images, ids, mask, num_images=n).logits
        b = model(torch.randn_like(images), ids, mask, num_images=n).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_only_trainable_parts_get_gradients(build):
    model, tok = build("llama")
    randomize_trainable(model)
    model.train()
    images, ids, mask, n = mmc4_batch(tok)
    model(images, ids, mask, num_images=n).logits.logsumexp(-1).mean().backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if _is_trainable_name(name)}
    assert any(name.startswith("perceiver.") for name in trainable)
    assert sum(name.endswith("new_token_weight") for name in trainable) == 2  # untied: input and output rows
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert model.conditioning.media is None and model.conditioning.latents is None  # cleared after forward


def test_freeze_new_embeddings_and_tied_rows(build):
    model, tok = build("llama", freeze_new_embeddings=True)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "new_token" in n)
    tied, _ = build("mpt")
    emb, head = tied.lang_encoder.get_input_embeddings(), tied.lang_encoder.get_output_embeddings()
    assert isinstance(emb, AddedTokenEmbedding) and isinstance(head, AddedTokenHead)
    assert head.tied and head.new_token_weight is emb.new_token_weight
    untied, _ = build("llama")
    assert untied.lang_encoder.get_output_embeddings().new_token_weight is not (
        untied.lang_encoder.get_input_embeddings().new_token_weight)
    # New rows start at the mean of the existing rows.
    torch.testing.assert_close(emb.new_token_weight[0], emb.base.weight[:emb.base_vocab_size].mean(0))


def test_head_gives_its_frozen_base_a_contiguous_gradient():
    """An odd logits width (32000 + 3) made the base head's gradient a strided column slice, which sent the
    frozen head's input-gradient product to a slow unaligned GEMM; the values must not change."""
    base = torch.nn.Linear(8, 32000, bias=False).requires_grad_(False)
    head = AddedTokenHead(base, 32000, 3)
    seen = []

    def watch_grad(module, inputs, out):
        out.register_hook(lambda g: seen.append(g.is_contiguous()))

    base.register_forward_hook(watch_grad)
    h = torch.randn(2, 5, 8, requires_grad=True)
    out = head(h)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert out.shape[-1] == 32003 and seen == [True]
    plain = h.detach().clone().requires_grad_(True)
    torch.cat((base(plain), torch.nn.functional.linear(plain, head.new_token_weight.detach())), -1).backward(grad)
    torch.testing.assert_close(h.grad, plain.grad)


def test_every_module_has_one_parent(build):
    model, _ = build("qwen2")
    seen = {}
    for name, module in model.named_modules(remove_duplicate=False):
        assert id(module) not in seen, f"{name} is also {seen[id(module)]}"
        seen[id(module)] = name


def test_cross_attention_interval(build):
    model, _ = build("llama", cross_attn_every_n_layers=2)
    layers = model.lang_encoder.get_submodule(model.decoder_layers_attr)
    assert [layer.gated_cross_attn_layer is not None for layer in layers] == [False, True, False, True]
    assert all(isinstance(layer, FlamingoLayer) for layer in layers)
    assert [layer.decoder_layer for layer in layers] == model.decoder_layers


def test_mask_latest_image_only_and_nothing_before_the_first():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=16, dim_visual=8, heads=2, dim_head=4)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
        block.ff_gate.fill_(0.5)
    # tokens: t0 (no image yet), <image>1, t, <image>2, t, t ; 3 image slots, 4 latents each
    media_index = torch.tensor([[0, 1, 1, 2, 2, 2]])
    mask, has_media = media_attention_mask(media_index, num_media=3, latents_per_media=4)
    x = torch.randn(1, 6, 16)
    media = torch.randn(1, 3, 4, 8)
    out = block(x, media.flatten(1, 2), mask, has_media)
    changed = media.clone()
    changed[:, 0] += 1.0  # change image 1 only
    out2 = block(x, changed.flatten(1, 2), mask, has_media)
    assert (out2[:, 1:3] - out[:, 1:3]).abs().max() > 1e-3
    torch.testing.assert_close(out2[:, [0, 3, 4, 5]], out[:, [0, 3, 4, 5]])
    # Before the first image: attention contributes nothing, the FFN half still applies.
    ff_only = x[:, 0] + block.ff(x[:, 0]) * torch.tanh(torch.tensor(0.5))
    torch.testing.assert_close(out[:, 0], ff_only)
    # An index past the last slot (more <image> tokens than images) also gets no attention output.
    mask, has_media = media_attention_mask(torch.tensor([[4]]), num_media=3, latents_per_media=4)
    torch.testing.assert_close(block(x[:, :1], media.flatten(1, 2), mask, has_media), ff_only.unsqueeze(1))


def test_one_image_slot_needs_no_mask():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=16, dim_visual=8, heads=2, dim_head=4)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    media_index = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # LAION-like: one image, maybe text before it
    mask, has_media = media_attention_mask(media_index, num_media=1, latents_per_media=4)
    assert mask is None
    full_mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)  # what the general rule gives with one slot
    x, media = torch.randn(2, 4, 16), torch.randn(2, 4, 8)
    torch.testing.assert_close(block(x, media, mask, has_media), block(x, media, full_mask, has_media))
    ff_only = x[0, 0] + block.ff(x[0, 0]) * torch.tanh(block.ff_gate)
    torch.testing.assert_close(block(x, media, mask, has_media)[0, 0], ff_only)


def test_fsdp_units_are_homogeneous_and_checkpointing_targets(build):
    model, _ = build("llama")
    units = [m for m in model.modules() if model.fsdp_wrap_fn(m)]
    vision_blocks = list(model.vision_encoder.visual.transformer.resblocks)
    assert len(units) == len(vision_blocks) + 4 + 4 + 1
    for unit in units:
        flags = {p.requires_grad for p in unit.parameters()}
        assert len(flags) == 1
    ckpt = [m for m in model.modules() if model.activation_checkpointing_fn(m)]
    assert len(ckpt) == 8 and not any(isinstance(m, FlamingoLayer) for m in ckpt)
    assert set(map(id, ckpt)) == set(map(id, model.decoder_layers + model.cross_attn_blocks))


def test_activation_checkpointing_gives_same_gradients(build):
    from functools import partial

    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl, apply_activation_checkpointing, checkpoint_wrapper)

    grads = []
    for use_ckpt in (False, True):
        torch.manual_seed(0)  # same random vision tower in both builds
        model, tok = build("llama")
        randomize_trainable(model)
        model.train()
        if use_ckpt:
            apply_activation_checkpointing(
                model, checkpoint_wrapper_fn=partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
                check_fn=model.activation_checkpointing_fn)
        images, ids, mask, n = mmc4_batch(tok)
        model(images, ids, mask, num_images=n).logits.logsumexp(-1).mean().backward()
        grads.append({k.replace("._checkpoint_wrapped_module", ""): p.grad for k, p in model.named_parameters()
                      if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)


def test_low_precision_lm(build):
    model, tok = build("llama", lm_dtype="bfloat16")
    assert model.lang_encoder.get_input_embeddings().base.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)
    randomize_trainable(model)
    images, ids, mask, n = mmc4_batch(tok)
    out = model(images, ids, mask, num_images=n).logits
    assert torch.isfinite(out).all()
    out.float().logsumexp(-1).mean().backward()
    assert model.perceiver.latents.grad is not None


def test_decoder_layer_discovery_and_override(lm_dir_factory):
    from recipe.model.lm import MediaConditioning, insert_cross_attention
    from recipe.model.lm_adapters import find_decoder_layers

    lm = AutoModelForCausalLM.from_pretrained(lm_dir_factory("gpt_neox"))
    assert find_decoder_layers(lm) == "gpt_neox.layers"
    assert find_decoder_layers(lm, "gpt_neox.layers") == "gpt_neox.layers"
    with pytest.raises(ValueError, match="model.decoder_layers_attr: .* not a ModuleList"):
        find_decoder_layers(lm, "gpt_neox.final_layer_norm")
    with pytest.raises(ValueError, match="model.decoder_layers_attr: .* has no submodule"):
        find_decoder_layers(lm, "gpt_neox.blocks")
    conditioning = MediaConditioning(media_token_id=0)
    insert_cross_attention(lm, conditioning, "gpt_neox.layers", dim=lm.config.hidden_size, dim_visual=8)
    with pytest.raises(ValueError, match="already has Flamingo layers"):
        insert_cross_attention(lm, conditioning, "gpt_neox.layers", dim=lm.config.hidden_size, dim_visual=8)
    with pytest.raises(RuntimeError, match="without media"):
        lm(input_ids=torch.tensor([[1, 2]]))


def test_special_tokens_order_and_pad(build, tokenizer_dir, lm_dir_factory, vision_name, tmp_path):
    from PIL import Image
    from transformers import AutoTokenizer

    from recipe.model import build_flamingo
    from recipe.tokens import END_OF_CHUNK, IMAGE, PAD

    model, tok = build("llama")
    base = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    assert tok.convert_tokens_to_ids([END_OF_CHUNK, IMAGE, PAD]) == [base, base + 1, base + 2]
    assert (model.eoc_token_id, model.media_token_id, tok.pad_token_id) == (base, base + 1, base + 2)
    # A tokenizer that already has a pad token gets no <PAD>.
    padded = AutoTokenizer.from_pretrained(tokenizer_dir)
    padded.pad_token = padded.eos_token
    padded.save_pretrained(tmp_path)
    model2, tok2, transform = build_flamingo(vision_name, None, lm_dir_factory("llama"), str(tmp_path))
    assert len(tok2) == base + 2 and PAD not in tok2.get_vocab()
    images = torch.stack([transform(Image.new("RGB", (50, 40)))])
    assert images.shape == (1, 3, 32, 32)  # open_clip's val transform at the tower's image size
    logits = model2.eval()(images.unsqueeze(0), tok2("<image>red", return_tensors="pt").input_ids).logits
    assert logits.shape[-1] == base + 2


def test_training_forward_runs_causal_self_attention_without_a_mask(build):
    """FlamingoComposerModel's forward: transformers builds no 4D mask, so SDPA can run causal flash kernels;
    with the batch's padding mask it would build one. The real tokens' logits are the masked model's."""
    from recipe.composer_model import FlamingoComposerModel

    model, tok = build("llama")
    images, ids, mask, n = mmc4_batch(tok)
    composer_model = FlamingoComposerModel(model, {"mmc4": 1.0}, {"mmc4": 3},
                                           lambda batch: batch["mmc4"]["input_ids"].shape[0])
    seen = []
    hooks = [layer.self_attn.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("attention_mask")),
                                                       with_kwargs=True) for layer in model.decoder_layers]
    try:
        logits = composer_model({"mmc4": {"images": images, "input_ids": ids, "num_images": n}})["mmc4"]
        assert len(seen) == len(hooks) and all(m is None for m in seen)
        masked = model(vision_x=images, lang_x=ids, attention_mask=mask, num_images=n).logits
        assert seen[-1] is not None and seen[-1].ndim == 4
    finally:
        for h in hooks:
            h.remove()
    assert (mask == 0).any()  # the batch has padding
    torch.testing.assert_close(logits[mask.bool()], masked[mask.bool()], rtol=1e-4, atol=1e-5)
