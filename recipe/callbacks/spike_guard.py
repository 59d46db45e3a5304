"""Loss-spike and non-finite guard: when the global training loss is NaN/Inf or more than `factor` times the
median of the last `window` steps, training stops at that step (before its checkpoint) and `recipe.train`
rolls back to the newest verified checkpoint, then replays with the offending window of batches skipped —
their data is drawn and their loss logged, but no update is applied — so the data order of every later
step is unchanged. The skips are in this callback's state, saved in every later checkpoint; a resume from
an older checkpoint meets the same spike again and skips it the same way (replay is deterministic).

Also logs the gradient norm before clipping and, under fp16, the loss scale.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Optional

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class SpikeDetected(Exception):
    """Raised on every rank at once (the loss is the all-reduced one): roll back and skip `event`."""

    def __init__(self, event: dict[str, Any], history: list[dict[str, Any]]):
        super().__init__(describe(event))
        self.event = event
        self.history = history


class SpikeGuardExhausted(Exception):
    """More spikes than `max_rollbacks`; the message is the one-line report."""


def describe(event: dict[str, Any]) -> str:
    why = "non-finite" if event["reason"] == "nonfinite" else f"> {event['factor']:g} x median {event['median']:.4g}"
    return f"batch {event['batch']}: loss {event['loss']:.4g} ({why})"


class SpikeGuard(Callback):
    def __init__(self, window: int = 100, factor: float = 3.0, skip_batches: int = 20, max_rollbacks: int = 3,
                 history: Optional[list[dict[str, Any]]] = None):
        self.window, self.factor, self.skip_batches, self.max_rollbacks = window, factor, skip_batches, max_rollbacks
        self.recent: deque[float] = deque(maxlen=window)
        # One record per spike: batch, reason, loss, median, skip_batches, and `skip` [first, last] once the
        # rollback knows where it resumes (recipe/train.py).
        self.history: list[dict[str, Any]] = list(history or [])
        self._grad_norm: Optional[torch.Tensor] = None

    def skipped(self, batch: int) -> bool:
        return any(e.get("skip") and e["skip"][0] <= batch <= e["skip"][1] for e in self.history)

    def after_backward(self, state: State, logger: Logger) -> None:
        # Fires per microbatch; the last one before AFTER_TRAIN_BATCH holds the step's full, unclipped gradient.
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        if not grads:
            self._grad_norm = None
            return
        local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
        sq = torch.stack([n.float() for n in torch._foreach_norm(local)]).square().sum()
        if state.fsdp_enabled:  # each rank holds a shard of the gradients
            dist.all_reduce(sq)
        self._grad_norm = sq.sqrt()

    def after_train_batch(self, state: State, logger: Logger) -> None:
        if self.skipped(int(state.timestamp.batch)):
            for p in state.model.parameters():  # AdamW leaves parameters without a gradient untouched
                p.grad = None

    def batch_end(self, state: State, logger: Logger) -> None:
        # timestamp.batch already counts this batch; its index is one less (the step it is logged at).
        batch = int(state.timestamp.batch) - 1
        metrics = {}
        if self._grad_norm is not None:
            metrics["spike_guard/grad_norm"] = self._grad_norm.item()
        if state.scaler is not None and state.scaler.is_enabled():
            metrics["spike_guard/loss_scale"] = float(state.scaler.get_scale())
        if self.skipped(batch):
            metrics["spike_guard/skipped_batch"] = 1.0
            logger.log_metrics(metrics, step=batch)
            return
        loss = state.total_loss_dict.get("loss/train/total")
        if loss is None:
            return
        median = statistics.median(self.recent) if len(self.recent) == self.window else math.nan
        reason = "nonfinite" if not math.isfinite(loss) else "spike" if loss > self.factor * median else None
        if reason is not None:
            event = {"batch": batch, "reason": reason, "loss": loss, "median": median, "factor": self.factor,
                     "skip_batches": self.skip_batches}
            if len(self.history) >= self.max_rollbacks:
                raise SpikeGuardExhausted(
                    f"spike guard: {describe(event)} after {len(self.history)} rollback(s), the limit "
                    f"(callbacks.spike_guard.max_rollbacks); earlier: "
                    + "; ".join(describe(e) for e in self.history))
            raise SpikeDetected(event, self.history + [event])
        self.recent.append(loss)
        logger.log_metrics(metrics, step=batch)

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque(state["recent"], maxlen=self.window)
        # A rollback loads a checkpoint older than the spike it is recovering from: keep what we know.
        known = {e["batch"]: e for e in state["history"]}
        known.update({e["batch"]: e for e in self.history})
        self.history = sorted(known.values(), key=lambda e: e["batch"])
