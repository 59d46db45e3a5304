"""`set_trainable`: each option changes exactly the intended parameters' requires_grad, gradients reach them
(the vision suffix included), FSDP units stay uniform, optimizer groups and bf16 casting follow."""

import pytest
import torch

from model_helpers import mmc4_batch, randomize_trainable
from recipe.trainer_parts import cast_frozen_units, optimizer_groups
from recipe.config import OptimizerConfig
from recipe.model.trainable import PARTS, format_counts, set_trainable

OPTIONS = [
    {},
    {"perceiver": False},
    {"cross_attn": False},
    {"new_embeddings": False},
    {"lm_embeddings": True},
    {"lm_norms": True},
    {"lm_last_n_layers": 2},
    {"lm_last_n_layers": -1, "lm_embeddings": True, "lm_norms": True},  # the whole LM
    {"vision_last_n_blocks": 1},
    {"vision_last_n_blocks": -1, "perceiver": False, "cross_attn": False},
]


def _expected(model, opts) -> set[str]:
    """The trainable names an option set should give, from parameter names alone."""
    layers = len(model.decoder_layers)
    blocks = len(model.vision_encoder.resblocks)
    n_lm, n_vis = opts.get("lm_last_n_layers", 0), opts.get("vision_last_n_blocks", 0)
    lm_from = 0 if n_lm == -1 else layers - n_lm
    vis_from = 0 if n_vis == -1 else blocks - n_vis
    layer_prefix = f"lang_encoder.{model.decoder_layers_attr}."
    out = set()
    for name, _ in model.named_parameters():
        if name.startswith("perceiver."):
            on = opts.get("perceiver", True)
        elif ".gated_cross_attn_layer." in name:
            on = opts.get("cross_attn", True)
        elif "new_token_" in name:
            on = opts.get("new_embeddings", True)
        elif name.startswith("vision_encoder.visual.transformer.resblocks."):
            on = int(name.split(".")[4]) >= vis_from and n_vis != 0
        elif name.startswith("vision_encoder."):
            on = False
        elif name.startswith(layer_prefix):
            on = int(name[len(layer_prefix):].split(".")[0]) >= lm_from and n_lm != 0
        elif ".base." in name:  # the LM's own embedding / head inside our added-token wrappers
            on = opts.get("lm_embeddings", False)
        else:
            assert name.startswith("lang_encoder."), name
            on = opts.get("lm_norms", False)
        if on:
            out.add(name)
    return out


@pytest.mark.parametrize("family", ["llama", "mpt"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_each_option_sets_exactly_its_parameters(build, family, opts):
    model, _ = build(family)
    counts = set_trainable(model, **opts)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _expected(model, opts)
    assert set(counts) == set(PARTS)
    assert sum(t for t, _ in counts.values()) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(n for _, n in counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["vision_stem"][0] == 0
    assert "perceiver" in format_counts(counts)

    # FSDP: every unit fsdp_wrap_fn picks is uniformly frozen or trainable.
    for unit in (m for m in model.modules() if model.fsdp_wrap_fn(m)):
        assert len({p.requires_grad for p in unit.parameters()}) == 1, type(unit).__name__


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_gradients_reach_exactly_the_trainable_parameters(build, opts):
    model, tok = build("llama")
    randomize_trainable(model)  # non-zero gates, so images reach the logits
    set_trainable(model, **opts)
    model.train()
    assert not any(m.training for m in model.vision_encoder.modules())  # eval (dropout-free) even when training
    images, ids, mask, n = mmc4_batch(tok)
    model(images, ids, mask, num_images=n).logits.logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    suffix = [p for b in model.vision_encoder.resblocks for p in b.parameters() if p.requires_grad]
    assert all(p.grad.abs().sum() > 0 for p in suffix)
    assert bool(suffix) == (opts.get("vision_last_n_blocks", 0) != 0)


def test_frozen_vision_runs_without_autograd_and_suffix_with_it(build):
    model, _ = build("llama")
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    assert not model.vision_encoder(images).requires_grad
    set_trainable(model, vision_last_n_blocks=1)
    out = model.vision_encoder(images)
    assert out.requires_grad
    out.sum().backward()
    assert images.grad is None  # the input is detached: autograd starts at the trainable suffix
    first, last = model.vision_encoder.resblocks[0], model.vision_encoder.resblocks[-1]
    assert all(p.grad is None for p in first.parameters())
    assert all(p.grad is not None for p in last.parameters())
    with torch.no_grad():
        assert not model.vision_encoder(images).requires_grad


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_optimizer_groups_follow_the_choice(build, opts):
    model, _ = build("mpt")  # tied embeddings: the shared rows must appear once
    set_trainable(model, **opts)
    groups = optimizer_groups(model, OptimizerConfig(weight_decay=0.1, weight_decay_backbone=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    by_decay: dict[float, set[str]] = {}
    for g in groups:
        assert g["params"], g
        by_decay.setdefault(g["weight_decay"], set()).update(names[id(p)] for p in g["params"])
    listed = [names[id(p)] for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {n for n, p in model.named_parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    assert by_decay.get(0.1, set()) == {n for n in listed if ".gated_cross_attn_layer." in n}
    backbone = {n for n in listed if (".decoder_layer." in n or ".resblocks." in n) and params[n].ndim >= 2
                and "wte" not in n}
    assert by_decay.get(0.05, set()) == backbone
    assert bool(backbone) == bool(opts.get("lm_last_n_layers") or opts.get("vision_last_n_blocks"))
    # embeddings, norms and biases of the backbone are never decayed
    assert not any(n for n in by_decay.get(0.05, set()) if ".base." in n or params[n].ndim < 2)


def test_optimizer_rejects_nothing_trainable(build):
    model, _ = build("llama")
    set_trainable(model, perceiver=False, cross_attn=False, new_embeddings=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        optimizer_groups(model, OptimizerConfig())


@pytest.mark.parametrize("opts", [{}, {"lm_last_n_layers": 2, "vision_last_n_blocks": 1}, {"perceiver": False}])
def test_bf16_casts_only_entirely_frozen_units(build, opts):
    model, _ = build("llama")
    set_trainable(model, **opts)
    cast_frozen_units(model, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    for unit in (m for m in model.modules() if model.fsdp_wrap_fn(m)):
        dtypes = {p.dtype for p in unit.parameters()}
        frozen = not any(p.requires_grad for p in unit.parameters())
        assert dtypes == {torch.bfloat16 if frozen else torch.float32}
    # the root's parameters (stem, embeddings, final norm) stay fp32
    assert model.vision_encoder.visual.conv1.weight.dtype == torch.float32


def test_bad_counts_are_rejected(build):
    model, _ = build("llama")
    with pytest.raises(ValueError, match="last 99 of only"):
        set_trainable(model, lm_last_n_layers=99)
    with pytest.raises(ValueError, match=">= 0 or -1"):
        set_trainable(model, vision_last_n_blocks=-2)


def test_export_carries_unfrozen_backbone_weights(build):
    from recipe.model import export_openflamingo_checkpoint, load_openflamingo_checkpoint

    model, _ = build("llama")
    set_trainable(model, lm_last_n_layers=1, lm_norms=True, vision_last_n_blocks=1)
    randomize_trainable(model, seed=3)
    state = export_openflamingo_checkpoint(model)
    last = f"lang_encoder.{model.decoder_layers_attr}.{len(model.decoder_layers) - 1}.decoder_layer."
    assert any(k.startswith(last) for k in state)
    assert any(k.startswith("vision_encoder.transformer.resblocks.1.") for k in state)  # the reference's names
    assert not any(k.startswith("vision_encoder.transformer.resblocks.0.") for k in state)  # frozen: not exported

    fresh, _ = build("llama")
    report = load_openflamingo_checkpoint(fresh, state)
    assert not report.missing_keys and not report.unexpected_keys
    ours, theirs = dict(model.named_parameters()), dict(fresh.named_parameters())
    for name, p in ours.items():
        if p.requires_grad:
            torch.testing.assert_close(theirs[name], p, msg=name)
