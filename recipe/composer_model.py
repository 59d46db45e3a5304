"""Composer wrapper around `Flamingo`: one forward per data source, Σ multiplier × per-source loss.

`Flamingo` is the single child (`self.model`), so Composer finds its `fsdp_wrap_fn` /
`activation_checkpointing_fn`, wraps it as one FSDP root and clips one global gradient norm.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from composer.metrics import LanguageCrossEntropy, LanguagePerplexity
from composer.models import ComposerModel

from recipe.model.flops import FlopsCounter
from recipe.tokens import IGNORE_INDEX

# Where the model's state dict (and so every checkpoint, sharded or not) carries the `model` config section.
MODEL_CONFIG_KEY = "_extra_state"


def shifted_token_mean_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean next-token cross-entropy over the non-ignored labels; 0 (not NaN) if there are none."""
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


class FlamingoComposerModel(ComposerModel):
    """Args:
        model: the `Flamingo` module.
        loss_multipliers: source name -> multiplier; also fixes the set (and order) of sources.
        device_batch_sizes: source name -> per-device batch size. With microbatching, a source's
            microbatch loss is rescaled so that its gradient is the mean over the source's own samples,
            whatever share of the microbatch it has (Composer weights microbatches by their sample count).
        num_samples_in_batch: the train DataSpec's sample counter (the weights Composer uses).
        model_config: the run's `model` config section as plain values; saved with every checkpoint, so
            `recipe.export` can rebuild the model from the checkpoint alone.
    """

    def __init__(self, model: torch.nn.Module, loss_multipliers: Mapping[str, float],
                 device_batch_sizes: Mapping[str, int], num_samples_in_batch, model_config: dict | None = None):
        super().__init__()
        self.model = model
        self.model_config = model_config
        self.sources = list(loss_multipliers)
        self.loss_multipliers = dict(loss_multipliers)
        self.device_batch_sizes = dict(device_batch_sizes)
        self._num_samples_in_batch = num_samples_in_batch
        self._full_batch_samples = num_samples_in_batch(
            {name: {"input_ids": torch.empty(size, 1)} for name, size in self.device_batch_sizes.items()})
        self.flops = FlopsCounter(model)

    def get_extra_state(self) -> dict:
        return {"model_config": self.model_config}

    def set_extra_state(self, state) -> None:
        """The saved config is for export; a run resuming or loading weights keeps its own."""

    def forward(self, batch: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        # The collates pad on the right, so causality alone keeps every real token from seeing padding. An
        # all-ones padding mask lets transformers skip the 4D mask (one host sync for `mask.all()`), and SDPA
        # runs causal flash attention; with no mask at all, transformers 4.57 looks for packed sequences in the
        # position ids and builds one on the host. Only outputs at pad positions change; they carry no loss.
        return {
            name: self.model(vision_x=b["images"], lang_x=b["input_ids"], num_images=b["num_images"],
                             attention_mask=torch.ones_like(b["input_ids"], dtype=torch.bool)).logits
            for name, b in batch.items() if name in self.loss_multipliers and b["input_ids"].shape[0] > 0
        }

    def loss(self, outputs: Mapping[str, torch.Tensor], batch) -> dict[str, torch.Tensor]:
        # Composer scales each microbatch's loss by n_micro / n_batch (its sample count over the batch's).
        micro = self._num_samples_in_batch(batch)
        anchor = next(iter(outputs.values()))
        losses = {"total": anchor.new_zeros((), dtype=torch.float32)}
        for name in self.sources:
            if name in outputs:
                rows = batch[name]["input_ids"].shape[0]
                scale = (self._full_batch_samples / micro) * (rows / self.device_batch_sizes[name])
                ce = shifted_token_mean_ce(outputs[name], batch[name]["labels"]) * scale
                losses["total"] = losses["total"] + self.loss_multipliers[name] * ce
                losses[f"loss_{name}"] = ce
            else:  # identical keys on every rank and step, or all_reduce of the loss dict hangs
                losses[f"loss_{name}"] = anchor.new_zeros((), dtype=torch.float32)
        return losses

    def eval_forward(self, batch, outputs=None):
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False):
        if is_train:  # anything here would re-run eval_forward after every training microbatch
            return {}
        metrics = {}
        for name in self.sources:
            for label, cls in (("CrossEntropy", LanguageCrossEntropy), ("Perplexity", LanguagePerplexity)):
                metric = cls(ignore_index=IGNORE_INDEX)
                metric.source = name  # survives Composer's per-evaluator deepcopy
                metrics[f"{label}/{name}"] = metric
        return metrics

    def update_metric(self, batch, outputs, metric) -> None:
        if metric.source not in outputs:
            return
        logits = outputs[metric.source][:, :-1].float()
        metric.update(logits.reshape(-1, logits.shape[-1]), batch[metric.source]["labels"][:, 1:].reshape(-1))

    def flops_per_batch(self, batch) -> float:
        return self.flops(batch)
