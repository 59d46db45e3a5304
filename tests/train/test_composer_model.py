"""FlamingoComposerModel on a real tiny Flamingo and real demo batches: per-source losses, microbatch
weighting, eval metrics, and FLOPs against torch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recipe import trainer_parts
from recipe.composer_model import shifted_token_mean_ce
from recipe.config import load_config, validate
from recipe.data.sources import split_batch
from recipe.tokens import IGNORE_INDEX
from tests.train.conftest import DEMO_YAML


@pytest.fixture(scope="module")
def setup(demo_assets):
    raw = load_config(DEMO_YAML, [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}",
                                  "train_data.num_workers=0"])
    cfg = validate(raw)
    torch.manual_seed(0)
    flamingo, tokenizer, transform = trainer_parts.build_flamingo_model(cfg.model)
    spec = trainer_parts.build_train_dataloader(cfg.train_data, tokenizer, transform, seed=0, run_name="unit")
    model = trainer_parts.build_composer_model(flamingo, cfg.train_data, spec, cfg.model)
    batch = next(iter(spec.dataloader))
    return model, batch, spec


def right_pad(b: dict, extra: int, pad_id: int) -> dict:
    """The batch with `extra` more pad columns on the right (as a longer row in the batch would add)."""
    pad = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {k: torch.nn.functional.pad(v, (0, extra), value=pad[k]) if k in pad else v for k, v in b.items()}


def test_loss_is_weighted_sum_of_per_source_token_means(setup):
    """Also: the forward passes no real padding mask (right padding); the loss equals the masked model's."""
    model, batch, _ = setup
    batch = {n: right_pad(b, 3, model.model.lang_encoder.generation_config.pad_token_id) for n, b in batch.items()}
    out = model.loss(model(batch), batch)
    assert set(out) == {"total", "loss_laion", "loss_mmc4"}
    for name in ("laion", "mmc4"):
        logits = model.model(vision_x=batch[name]["images"], lang_x=batch[name]["input_ids"],
                             attention_mask=batch[name]["attention_mask"], num_images=batch[name]["num_images"]).logits
        assert torch.allclose(out[f"loss_{name}"], shifted_token_mean_ce(logits, batch[name]["labels"]), atol=1e-6)
    assert torch.allclose(out["total"], 0.2 * out["loss_laion"] + out["loss_mmc4"])


def test_model_builder_turns_cudnn_attention_off(setup):
    """`model.cudnn_attention: false` (the default) is a process-wide SDPA switch set by the builder."""
    assert not torch.backends.cuda.cudnn_sdp_enabled()


def test_absent_source_and_untrained_source_give_zeros_not_nan(setup):
    model, batch, _ = setup
    only_laion = {"laion": batch["laion"]}
    out = model.loss(model(only_laion), only_laion)
    assert set(out) == {"total", "loss_laion", "loss_mmc4"} and out["loss_mmc4"].item() == 0.0

    no_targets = {n: {**b, "labels": torch.full_like(b["labels"], IGNORE_INDEX)} for n, b in batch.items()}
    out = model.loss(model(no_targets), no_targets)
    assert all(v.item() == 0.0 for v in out.values())
    out["total"].backward()  # a zero loss still back-propagates (no NaN gradients)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_microbatches_weight_each_source_by_its_own_samples(setup):
    """4 LAION rows and 1 MMC4 row in 2 mixed microbatches (MMC4 only in the first) or 3 per-source ones.
    Composer weights each microbatch by its share of samples; the loss must undo that per source."""
    model, batch, spec = setup
    small = {"laion": {k: v[:4] for k, v in batch["laion"].items()}, "mmc4": {k: v[:1] for k, v in batch["mmc4"].items()}}
    model.device_batch_sizes, saved = {"laion": 4, "mmc4": 1}, model.device_batch_sizes
    model._full_batch_samples, saved_n = 5, model._full_batch_samples
    try:
        for per_source, layout in ((False, [["laion", "mmc4"], ["laion"]]), (True, [["laion"], ["laion"], ["mmc4"]])):
            micro = split_batch(small, 2, per_source=per_source)
            assert [sorted(m) for m in micro] == layout
            composer_total = sum(spec.get_num_samples_in_batch(m) / 5 * model.loss(model(m), m)["total"]
                                 for m in micro)
            ce = {n: [shifted_token_mean_ce(model(m)[n], m[n]["labels"]) for m in micro if n in m] for n in small}
            expected = 0.2 * sum(ce["laion"]) / 2 + 1.0 * ce["mmc4"][0]
            assert torch.allclose(composer_total, expected, atol=1e-6)
    finally:
        model.device_batch_sizes, model._full_batch_samples = saved, saved_n


def test_eval_metrics_per_source(setup):
    model, batch, _ = setup
    assert model.get_metrics(is_train=True) == {}
    metrics = model.get_metrics(is_train=False)
    assert set(metrics) == {"CrossEntropy/laion", "Perplexity/laion", "CrossEntropy/mmc4", "Perplexity/mmc4"}
    outputs = model.eval_forward(batch)
    for m in metrics.values():
        model.update_metric(batch, outputs, m)
    loss = model.loss(outputs, batch)
    for name in ("laion", "mmc4"):
        ce = metrics[f"CrossEntropy/{name}"].compute()
        assert torch.allclose(ce, loss[f"loss_{name}"], atol=1e-5)
        assert torch.allclose(metrics[f"Perplexity/{name}"].compute(), ce.exp(), rtol=1e-5)


def test_flops_match_torch_flop_counter(setup):
    """Forward + backward of a LAION batch (one image per sample, padding counted as tokens) measured by
    torch's FlopCounterMode: frozen weights get no weight gradients, the vision tower no backward at all."""
    model, batch, _ = setup
    laion = {"laion": {**batch["laion"], "attention_mask": torch.ones_like(batch["laion"]["attention_mask"])}}
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(model(laion), laion)["total"].backward()
    model.zero_grad(set_to_none=True)
    measured, predicted = counter.get_total_flops(), model.flops_per_batch(laion)
    assert predicted == pytest.approx(measured, rel=0.1)
    # More tokens and more images cost more.
    assert model.flops_per_batch(batch) > predicted


def test_ddp_activation_checkpointing_keeps_gradients_and_state_dict(demo_assets, setup):
    """Non-reentrant checkpointing of decoder layers and xattn blocks (frozen inputs): same gradients as
    without, same state-dict keys (checkpoints stay interchangeable)."""
    _, batch, spec = setup
    raw = load_config(DEMO_YAML, [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}"])
    cfg = validate(raw)
    grads, keys = [], []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        flamingo, _, _ = trainer_parts.build_flamingo_model(cfg.model)
        if checkpointed:
            trainer_parts.apply_activation_checkpointing(flamingo)
            assert sum(type(m).__name__ == "CheckpointWrapper" for m in flamingo.modules()) == 2 * 4
        model = trainer_parts.build_composer_model(flamingo, cfg.train_data, spec, cfg.model)
        model.loss(model(batch), batch)["total"].backward()
        grads.append({n.replace("_checkpoint_wrapped_module.", ""): p.grad for n, p in model.named_parameters()
                      if p.grad is not None})
        keys.append(list(model.state_dict()))
    assert keys[0] == keys[1]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name


@pytest.mark.parametrize("opts", [{"lm_last_n_layers": 2}, {"vision_last_n_blocks": 1, "perceiver": False},
                                  {"lm_last_n_layers": -1, "lm_embeddings": True, "lm_norms": True,
                                   "vision_last_n_blocks": -1}, {"new_embeddings": False, "cross_attn": False}])
def test_flops_follow_the_trainable_choice(setup, opts):
    """Unfrozen decoder layers / vision blocks cost a weight gradient (6N), frozen blocks behind a trainable
    part a backward for activations (4N), the frozen prefix only a forward: the counter still matches
    torch's FlopCounterMode, and a larger trainable set costs more than the reference's."""
    from recipe.model.flops import FlopsCounter
    from recipe.model.trainable import set_trainable

    model, batch, _ = setup
    laion = {"laion": {**batch["laion"], "attention_mask": torch.ones_like(batch["laion"]["attention_mask"])}}
    default = FlopsCounter(model.model)(laion)
    try:
        set_trainable(model.model, **opts)
        counter = FlopCounterMode(display=False)
        with counter:
            model.loss(model(laion), laion)["total"].backward()
        model.zero_grad(set_to_none=True)
        predicted = FlopsCounter(model.model)(laion)
        assert predicted == pytest.approx(counter.get_total_flops(), rel=0.1)
        if opts.get("lm_last_n_layers") or opts.get("vision_last_n_blocks"):
            assert predicted > default
    finally:
        set_trainable(model.model)
