"""Where a training step's GPU time goes: a `torch.profiler` window over whole steps, its GPU kernels grouped
by kind (GEMM, attention, NCCL, fused Triton, ...), and the GPU's idle share of the wall time (the part no
kernel runs: host syncs, launch overhead, waiting for data)."""

from __future__ import annotations

import re
import time

import torch
from composer import Callback, Event, State
from composer.loggers import Logger
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# First match wins: attention kernels often contain "gemm"-like words, NCCL kernels "reduce".
CATEGORIES = [
    ("nccl", r"nccl"),
    ("attention", r"flash|fmha|attention|sdpa"),
    ("gemm", r"gemm|gemv|cutlass|xmma|nvjet|cublas|wgmma|sm\d\d_"),
    ("conv", r"conv|cudnn"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("fused by compile (triton)", r"triton"),
    ("copy/cast/fill", r"copy|cast|memcpy|memset|fill"),
    ("softmax/norm/reduce/loss", r"softmax|norm|reduce|cross_entropy|nll|sum"),
    ("index/gather/scatter", r"index|gather|scatter|nonzero|where|masked|embedding"),
    ("other elementwise", r"elementwise|vectorized|unrolled"),
]


def category(kernel_name: str) -> str:
    name = kernel_name.lower()
    return next((label for label, pattern in CATEGORIES if re.search(pattern, name)), "other")


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (kernels on several streams overlap)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total, end = total + (e - s), e
        elif e > end:
            total, end = total + (e - end), e
    return total


def summarize_kernels(kernels: list[tuple[str, float, float]], steps: int, wall_s: float, top: int = 25) -> dict:
    """kernels: (name, start µs, end µs) of every GPU kernel in the window of `steps` steps lasting `wall_s`."""
    per_step = lambda us: round(us / steps / 1e3, 2)  # noqa: E731 - µs over the window -> ms per step
    by_cat, by_name = {}, {}
    for name, s, e in kernels:
        kind = category(name)
        by_cat[kind] = by_cat.get(kind, 0.0) + (e - s)
        calls, us = by_name.get(name, (0, 0.0))
        by_name[name] = (calls + 1, us + (e - s))
    busy = busy_us([(s, e) for _, s, e in kernels])
    wall_us = wall_s * 1e6
    return {
        "steps": steps,
        "wall_ms_per_step": per_step(wall_us),
        "gpu_busy_ms_per_step": per_step(busy),
        "gpu_idle_frac": round(1 - busy / wall_us, 4) if wall_us else None,
        "kernel_ms_per_step": {c: per_step(us) for c, us in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"name": n[:160], "category": category(n), "ms_per_step": per_step(us),
                         "calls_per_step": round(calls / steps, 1)}
                        for n, (calls, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]],
    }


class StepProfiler(Callback):
    """Profile batches `first` .. `first + steps - 1` (1-based, whole steps including the optimizer); then
    `report()` gives `summarize_kernels`' dict and the profiler's own tables (by GPU and by host time), and
    can save the window as a Chrome trace (`.json.gz`). Reading the events takes a while: call it on one rank.
    """

    def __init__(self, first: int, steps: int):
        self.first, self.steps = first, steps
        self._prof = None
        self._t0 = 0.0
        self._wall = None

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        batch = int(state.timestamp.batch)  # batches finished so far
        if event == Event.BATCH_START and batch == self.first - 1:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self._sync()
            self._prof = profile(activities=activities)
            self._prof.start()
            self._t0 = time.perf_counter()
        elif event == Event.BATCH_END and self._prof is not None and batch == self.first + self.steps - 1:
            self._sync()
            self._wall = time.perf_counter() - self._t0
            self._prof.stop()

    def report(self, trace_path: str | None = None) -> tuple[dict, str]:
        if self._wall is None:
            raise RuntimeError("the profiled steps did not run")
        # GPU-side user annotations (e.g. "Optimizer.step#AdamW.step") span kernels; they are not kernels.
        kernels = [(e.name, e.time_range.start, e.time_range.end) for e in self._prof.events()
                   if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
        averages = self._prof.key_averages()
        tables = "\n\n".join(averages.table(sort_by=key, row_limit=40, max_name_column_width=100)
                              for key in ("self_device_time_total", "self_cpu_time_total"))
        if trace_path:
            self._prof.export_chrome_trace(trace_path)
        return summarize_kernels(kernels, self.steps, self._wall), tables

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
