"""A Composer callback that logs how many raw samples the data shaping rejected (and replaced), by source
and reason: `data/rejected/<source>/<reason>` is the run's cumulative count over all ranks. The totals are
checkpointed, so they continue across resumes."""

from __future__ import annotations

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class RejectionCounter(Callback):
    def __init__(self, reasons: dict[str, tuple[str, ...]]):
        self.reasons = {name: tuple(r) for name, r in reasons.items()}
        self.totals = {name: [0] * len(r) for name, r in self.reasons.items()}

    def batch_end(self, state: State, logger: Logger) -> None:
        metrics = {}
        for name, reasons in self.reasons.items():
            b = state.batch.get(name)
            counts = torch.zeros(len(reasons), dtype=torch.int64) if b is None else b["rejected"].sum(dim=0).cpu()
            counts = state.device.tensor_to_device(counts)
            dist.all_reduce(counts, reduce_operation="SUM")  # same keys on every rank, every step
            for i, reason in enumerate(reasons):
                self.totals[name][i] += int(counts[i])
                metrics[f"data/rejected/{name}/{reason}"] = self.totals[name][i]
        logger.log_metrics(metrics)

    def state_dict(self) -> dict:
        return {"totals": self.totals}

    def load_state_dict(self, state: dict) -> None:
        self.totals = {name: list(state["totals"].get(name, [0] * len(r))) for name, r in self.reasons.items()}
