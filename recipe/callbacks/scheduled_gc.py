"""A Composer callback that runs Python's cyclic garbage collector on a schedule instead of automatically.

Automatic collection fires whenever enough container objects have been allocated; a full (generation 2)
pass over the heap of a large training process (model, compiled graphs, dataloader state) stalls the step
it lands in, and under data parallelism every rank waits for the slowest. Here automatic collection is off
while training and every rank collects at the same batches.
"""

from __future__ import annotations

import gc

from composer.core import Callback, State
from composer.loggers import Logger


class ScheduledGC(Callback):
    def __init__(self, interval: int = 100, generation: int = 1):
        if interval < 1 or generation not in (0, 1, 2):
            raise ValueError(f"need interval >= 1 and generation in 0..2, got {interval}, {generation}")
        self.interval, self.generation = interval, generation
        self._was_enabled = True

    def fit_start(self, state: State, logger: Logger) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.collect()

    def batch_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) % self.interval == 0:
            gc.collect(self.generation)

    def eval_start(self, state: State, logger: Logger) -> None:
        gc.collect(self.generation)

    def fit_end(self, state: State, logger: Logger) -> None:
        gc.collect()
        if self._was_enabled:
            gc.enable()
