"""Callbacks and loggers by name: Composer's, under the names llm-foundry gives them, beside the recipe's own.

The config's `callbacks:` and `loggers:` sections map a name here to its class's keyword arguments
(`recipe/config/validation.py` checks them against the constructor before the run starts). Classes are named as
`module:Class` and imported when used: optional loggers need their own packages (`PACKAGES`).
"""

from __future__ import annotations

import importlib

CALLBACKS = {
    "lr_monitor": "composer.callbacks:LRMonitor",
    "speed_monitor": "composer.callbacks:SpeedMonitor",
    "memory_monitor": "composer.callbacks:MemoryMonitor",  # CUDA only: not built on CPU
    "runtime_estimator": "composer.callbacks:RuntimeEstimator",
    "optimizer_monitor": "composer.callbacks:OptimizerMonitor",
    "activation_monitor": "composer.callbacks:ActivationMonitor",
    "nan_monitor": "composer.callbacks:NaNMonitor",
    "system_metrics_monitor": "composer.callbacks:SystemMetricsMonitor",
    "memory_snapshot": "composer.callbacks:MemorySnapshot",
    "oom_observer": "composer.callbacks:OOMObserver",
    "free_outputs": "composer.callbacks:FreeOutputs",
    "early_stopper": "composer.callbacks:EarlyStopper",
    "threshold_stopper": "composer.callbacks:ThresholdStopper",
    "captions": "recipe.callbacks.captions:CaptionSamples",
    "scheduled_gc": "recipe.callbacks.scheduled_gc:ScheduledGC",
    "spike_guard": "recipe.callbacks.spike_guard:SpikeGuard",
}

LOGGERS = {
    "wandb": "composer.loggers:WandBLogger",
    "tensorboard": "composer.loggers:TensorboardLogger",
    "mlflow": "composer.loggers:MLFlowLogger",
    "comet_ml": "composer.loggers:CometMLLogger",
    "neptune": "composer.loggers:NeptuneLogger",
    "file": "composer.loggers:FileLogger",
    "in_memory_logger": "composer.loggers:InMemoryLogger",
    "jsonl": "recipe.callbacks.jsonl_logger:JSONLLogger",
}

# Packages a logger imports only when built: checked with the config, not after the model has loaded.
PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "neptune": "neptune"}

# Composer names that other keys cover here: one line saying which.
ELSEWHERE = {
    "checkpoint_saver": "set save_folder / save_interval instead (the recipe's saver also writes the manifests "
                        "that resuming verifies)",
    "load_checkpoint": "set load_path (or autoresume) instead",
    "generate": "use callbacks.captions instead (Flamingo generates from images)",
    "console": "set log_to_console / console_log_interval instead",
    "progress_bar": "set progress_bar instead",
}


def resolve(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
