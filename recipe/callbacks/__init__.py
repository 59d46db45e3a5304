"""Composer callbacks and the logger destination of this recipe, one per file; `recipe/registry.py` names them
beside Composer's, and `recipe.trainer_parts` builds them from the config's `callbacks:` and `loggers:` sections."""

from recipe.callbacks.captions import CaptionSamples
from recipe.callbacks.jsonl_logger import JSONLLogger
from recipe.callbacks.rejections import RejectionCounter
from recipe.callbacks.scheduled_gc import ScheduledGC
from recipe.callbacks.spike_guard import SpikeGuard

__all__ = ["CaptionSamples", "JSONLLogger", "RejectionCounter", "ScheduledGC", "SpikeGuard"]
