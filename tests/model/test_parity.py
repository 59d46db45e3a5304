"""Our Flamingo against the reference OpenFlamingo 2.0.1 over the same tiny backbones and weights."""

import pytest
import torch

from model_helpers import laion_batch, mmc4_batch, randomize_trainable
from recipe.model import export_openflamingo_checkpoint, load_openflamingo_checkpoint

# GPT-2 and Qwen2 are left out: the reference's FlamingoLayer cannot wrap them under transformers 4.57
# (GPT-2 passes its layer arguments positionally; Qwen2 reads `attention_type` off each layer).
# mosaic_gpt / mpt_remote: our stand-ins for the remote-code LMs of OpenFlamingo-3B and -9B (tests/stand_ins).
REF_FAMILIES = ["llama", "mistral", "mpt", "gpt_neox", "opt", "gptj", "mosaic_gpt", "mpt_remote"]


@pytest.mark.parametrize("family", REF_FAMILIES)
def test_logits_match_reference(build, build_reference, family):
    n = 2 if family == "opt" else 1  # one family with a cross-attention interval > 1
    ours, tok = build(family, cross_attn_every_n_layers=n)
    randomize_trainable(ours)
    ref = build_reference(ours, family, cross_attn_every_n_layers=n)
    for batch_fn in (laion_batch, mmc4_batch):
        images, ids, mask, num_images = batch_fn(tok)
        with torch.no_grad():
            got = ours(images, ids, mask, num_images=num_images).logits
            want = ref(images.unsqueeze(2), ids, mask).logits
        assert got.shape == want.shape == (*ids.shape, len(tok))
        diff = (got - want).abs().max().item()
        print(f"parity {family} {batch_fn.__name__}: max abs logit diff {diff:.2e}")
        assert diff < 1e-5
        # The images matter: the same text with other images gives other logits.
        with torch.no_grad():
            other = ours(torch.randn_like(images), ids, mask, num_images=num_images).logits
        assert (other - got).abs().max() > 1e-3


def test_incremental_forward_with_cache_matches_reference(build, build_reference):
    """A second chunk fed with past_key_values: its tokens see only the <image>s inside that chunk."""
    ours, tok = build("llama")
    randomize_trainable(ours)
    ref = build_reference(ours, "llama")
    images, ids, mask, num_images = mmc4_batch(tok)
    k = 9
    with torch.no_grad():
        a1 = ours(images, ids[:, :k], mask[:, :k], num_images=num_images, use_cache=True)
        b1 = ref(images.unsqueeze(2), ids[:, :k], mask[:, :k], use_cache=True)
        a2 = ours(images, ids[:, k:], mask, num_images=num_images, past_key_values=a1.past_key_values,
                  use_cache=True).logits
        b2 = ref(images.unsqueeze(2), ids[:, k:], mask, past_key_values=b1.past_key_values, use_cache=True).logits
    diff = max((a1.logits - b1.logits).abs().max().item(), (a2 - b2).abs().max().item())
    print(f"parity incremental llama: max abs logit diff {diff:.2e}")
    assert diff < 1e-5


@pytest.mark.parametrize("family", ["llama", "mpt", "mosaic_gpt", "mpt_remote"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_matches_reference(build, build_reference, family, num_beams):
    ours, tok = build(family)
    randomize_trainable(ours, std=0.5)
    ref = build_reference(ours, family)
    tok.padding_side = "left"
    enc = tok(["<image>a photo of", "red <image>blue square<|endofchunk|><image>the"], return_tensors="pt",
              padding=True)
    images = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    images[0, 1] = 0
    # No generated <image>: a third <image> with two images is malformed input, where the reference
    # attends uniformly over all image slots (padding included) and we attend to none.
    kw = dict(max_new_tokens=8, num_beams=num_beams, pad_token_id=tok.pad_token_id, do_sample=False,
              bad_words_ids=[[ours.media_token_id]])
    got = ours.generate(images, enc.input_ids, enc.attention_mask, num_images=torch.tensor([1, 2]), **kw)
    want = ref.generate(images.unsqueeze(2), enc.input_ids, enc.attention_mask, **kw)
    assert got.shape[1] > enc.input_ids.shape[1]
    assert torch.equal(got, want)


# The reference's save path never keeps these rows (its filter keeps trainable tensors and names holding
# "embed"): the untied heads of LLaMA-like LMs (GPT-J's with its bias), MosaicGPT's `wte` once frozen.
UNSAVED_ROWS = {"llama": ["lang_encoder.lm_head.new_token_weight"],
                "mistral": ["lang_encoder.lm_head.new_token_weight"],
                "gptj": ["lang_encoder.lm_head.new_token_weight", "lang_encoder.lm_head.new_token_bias"]}


def reference_train_checkpoint(ref, path):
    """What the reference's train.py writes under DDP: `module.`-prefixed names through its own
    `filter_state_dict_to_trainable`, inside its training-checkpoint dict."""
    from torch.nn.parallel import DistributedDataParallel

    from open_flamingo.train.train_utils import filter_state_dict_to_trainable

    ddp = DistributedDataParallel(ref)
    state = filter_state_dict_to_trainable(ddp, ddp.state_dict())
    torch.save({"epoch": 0, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    return {k.removeprefix("module."): v for k, v in state.items()}


@pytest.mark.parametrize("family,freeze_embeddings", [(f, False) for f in REF_FAMILIES] + [("mosaic_gpt", True)])
def test_reference_checkpoint_imports_strictly(build, build_reference, process_group, family, freeze_embeddings,
                                               tmp_path):
    ours, tok = build(family)
    randomize_trainable(ours, seed=5)
    ref = build_reference(ours, family, freeze_lm_embeddings=freeze_embeddings)
    saved = reference_train_checkpoint(ref, tmp_path / "checkpoint_0.pt")

    fresh, _ = build(family)
    fresh.vision_encoder.visual.load_state_dict(ours.vision_encoder.visual.state_dict())
    report = load_openflamingo_checkpoint(fresh, str(tmp_path / "checkpoint_0.pt"))  # strict
    assert not report.missing_keys and not report.unexpected_keys
    expected = ["lang_encoder.transformer.wte.new_token_weight"] if freeze_embeddings else UNSAVED_ROWS.get(family, [])
    assert report.defaulted_keys == expected
    assert all(k in report.summary() for k in expected)

    # The reference loading the same file into a model it builds afresh (as its users do, strict=False):
    # every logit agrees, the added tokens' included (rows it never saved included).
    ref_fresh = build_reference(ours, family, load_ours=False, freeze_lm_embeddings=freeze_embeddings)
    assert not ref_fresh.load_state_dict(saved, strict=False).unexpected_keys
    images, ids, mask, num_images = mmc4_batch(tok)
    with torch.no_grad():
        got = fresh(images, ids, mask, num_images=num_images).logits
        want = ref_fresh(images.unsqueeze(2), ids, mask).logits
        trained = ref(images.unsqueeze(2), ids, mask).logits
    base = len(tok) - 3
    diff = (got - want).abs().max().item()
    print(f"reference checkpoint {family}: ours-reference after import {diff:.2e}")
    assert (got[..., :base] - want[..., :base]).abs().max() < 1e-5
    assert diff < 1e-4  # transformers samples grown rows within 1e-9 of the rows' covariance around their mean
    if not expected:  # nothing left out: the imported model is the trained one
        assert (got - trained).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["llama", "mpt", "gpt_neox", "mosaic_gpt", "mpt_remote"])
def test_checkpoint_round_trip_through_reference(build, build_reference, family, tmp_path):
    ours, tok = build(family)
    randomize_trainable(ours, seed=5)
    ref = build_reference(ours, family)  # ours -> export -> reference
    images, ids, mask, num_images = mmc4_batch(tok)

    # reference -> (its full state dict, saved and read back with weights_only) -> a fresh model of ours
    path = tmp_path / "checkpoint.pt"
    torch.save(ref.state_dict(), path)
    fresh, _ = build(family)
    fresh.vision_encoder.visual.load_state_dict(ours.vision_encoder.visual.state_dict())
    report = load_openflamingo_checkpoint(fresh, str(path))
    assert not report.missing_keys and not report.unexpected_keys and not report.defaulted_keys
    # The same keys with the segments FSDP and activation checkpointing insert load the same tensors.
    layers = ours.decoder_layers_attr
    wrapped = {k.replace(f"{layers}.", f"{layers}._fsdp_wrapped_module.").replace(
        ".decoder_layer.", ".decoder_layer._checkpoint_wrapped_module."): v for k, v in ref.state_dict().items()}
    assert any("_fsdp_wrapped_module" in k for k in wrapped)
    fresh2, _ = build(family)
    fresh2.vision_encoder.visual.load_state_dict(ours.vision_encoder.visual.state_dict())
    assert sorted(load_openflamingo_checkpoint(fresh2, wrapped).loaded_keys) == sorted(report.loaded_keys)

    with torch.no_grad():
        a = ours(images, ids, mask, num_images=num_images).logits
        r = ref(images.unsqueeze(2), ids, mask).logits
        b = fresh(images, ids, mask, num_images=num_images).logits
        c = fresh2(images, ids, mask, num_images=num_images).logits
    print(f"round trip {family}: ours-ref {(a - r).abs().max():.2e} ours-reloaded {(a - b).abs().max():.2e}")
    assert (a - r).abs().max() < 1e-5
    assert torch.equal(a, b)
    assert torch.equal(a, c)
    # Exporting the reloaded model gives back the same tensors.
    again = export_openflamingo_checkpoint(fresh)
    first = export_openflamingo_checkpoint(ours)
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def test_strict_load_rejects_unknown_and_incomplete(build):
    ours, _ = build("llama")
    sd = export_openflamingo_checkpoint(ours)
    with pytest.raises(ValueError, match="unexpected"):
        load_openflamingo_checkpoint(ours, {**sd, "lang_encoder.not_a_param": torch.zeros(1)})
    partial = {k: v for k, v in sd.items() if not k.startswith("perceiver.")}
    with pytest.raises(ValueError, match="missing"):
        load_openflamingo_checkpoint(ours, partial)
    report = load_openflamingo_checkpoint(ours, partial, strict=False)
    assert report.missing_keys and all(k.startswith("perceiver.") for k in report.missing_keys)
