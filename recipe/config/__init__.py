"""The training configuration: a typed schema (dataclasses) and its validation.

A YAML file plus `dotted.key=value` overrides is loaded with OmegaConf, resolved (loading.py), and checked
against `TrainConfig` (schema.py, typed.py) and the cross-key rules (validation.py) before anything heavy
starts; `callbacks` and `loggers` entries against their classes' constructors (recipe/registry.py). Every
problem becomes a `ConfigError` whose message is one line naming the offending key (unknown keys get a
did-you-mean). `variables:` is free-form: it only holds interpolation anchors (`${variables.x}`) and is not
passed on. What is logged or saved goes through `redact` (redaction.py).
"""

from recipe.config.loading import load_config
from recipe.config.redaction import redact
from recipe.config.schema import (ConfigError, DataConfig, EvalDataConfig, ModelConfig, OptimizerConfig,
                                  SchedulerConfig, TrainConfig)
from recipe.config.typed import build_dataclass
from recipe.config.validation import validate

__all__ = ["ConfigError", "DataConfig", "EvalDataConfig", "ModelConfig", "OptimizerConfig",
           "SchedulerConfig", "TrainConfig", "build_dataclass", "load_config", "redact", "validate"]
