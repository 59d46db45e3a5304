"""A Composer LoggerDestination that appends every logged metric (and table) to a JSONL file.

One line per `log_metrics` call: `{"step": <batch>, "<key>": <value>, ...}`, flushed at once so a killed
run keeps everything it logged. A resumed run appends after the old lines; readers keep the last value
per (step, key). Written by global rank 0 only.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import torch
from composer.loggers import LoggerDestination
from composer.utils import dist


def _plain(value: Any):
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class JSONLLogger(LoggerDestination):
    def __init__(self, path: str):
        self.path = path
        self._file = None

    def _write(self, record: dict) -> None:
        if dist.get_global_rank() != 0:
            return
        if self._file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        self._write({"step": step, **{k: _plain(v) for k, v in metrics.items()}})

    def log_table(self, columns: list[str], rows: list[list[Any]], name: str = "Table",
                  step: Optional[int] = None) -> None:
        self._write({"step": step, "table": name, "columns": columns, "rows": [[_plain(v) for v in r] for r in rows]})

    def close(self, state, logger) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str, key: str) -> dict[int, float]:
    """{step: value} of one metric from a JSONL log (the last write wins, as after a resume)."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if key in record:
                values[record["step"]] = record[key]
    return values
