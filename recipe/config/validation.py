"""The cross-key rules of a training config, checked before anything heavy starts: paths that must exist,
durations, batch splits, what depends on the launched world size, callbacks' and loggers' arguments against
their classes (recipe/registry.py), and the `auto` settings resolved for the device."""

from __future__ import annotations

import importlib.util
import inspect
import os
import typing
from typing import Any, Optional

from recipe.config.schema import EXTRA_KWARGS, OWN_SCHEMAS, ConfigError, TrainConfig
from recipe.config.typed import build_dataclass, build_value, describe, suggest
from recipe.hub import is_hub_id


# Training keys that evaluation would accept and ignore: each is a one-line error saying why.
_NOT_FOR_EVAL = {
    "prefetch_factor": "not used for evaluation (eval loaders keep PyTorch's default; remove it)",
    "microbatches": "not used for evaluation (an eval batch holds one source and runs whole; remove it)",
    "clean_stale_shm": "not used for evaluation (train_data.clean_stale_shm cleans before the eval loaders are "
                       "built; remove it)",
}
_NOT_FOR_EVAL_SOURCE = {
    "shuffle": "not used for evaluation (each source is read once, in order; remove it)",
    "shuffle_seed": "not used for evaluation (each source is read once, in order; remove it)",
    "shuffle_block_size": "not used for evaluation (each source is read once, in order; remove it)",
    "epoch_size": "not used for evaluation (the whole source is read; eval_subset_num_batches shortens it)",
    "loss_multiplier": "not used for evaluation (each source's loss is reported unweighted; remove it)",
}


def _reject_unused_eval_keys(raw: dict) -> None:
    data = raw.get("eval_data")
    if not isinstance(data, dict):
        return
    for key, why in _NOT_FOR_EVAL.items():
        if key in data:
            raise ConfigError(f"eval_data.{key}: {why}")
    for name, src in (data.get("sources") or {}).items():
        for key, why in _NOT_FOR_EVAL_SOURCE.items():
            if isinstance(src, dict) and key in src:
                raise ConfigError(f"eval_data.sources.{name}.{key}: {why}")


def _looks_local(path: str) -> bool:
    """Hub ids look like `org/name`; anything with a scheme is remote; the rest is a local path."""
    if "://" in path:
        return False
    return path.startswith(("/", ".", "~")) or path.count("/") != 1 or os.path.exists(path)


def _check_exists(path: Optional[str], key: str, what: str = "path"):
    if path is not None and "://" not in path and not os.path.exists(os.path.expanduser(path)):
        raise ConfigError(f"{key}: {what} does not exist: {path}")


# Duration units per key: what Composer (or our callback) counts for it. `sp` counts the samples of all sources
# (one step = every source's global batch), `tok` their tokens. `ep` is nowhere: a streaming epoch is the whole data.
_ANY_STEP_UNIT = (("ba", "sp", "tok"), "an epoch of streaming data is all of it")
_DURATION_UNITS = {
    "max_duration": _ANY_STEP_UNIT,
    "scheduler.t_warmup": _ANY_STEP_UNIT,
    "save_interval": _ANY_STEP_UNIT,
    "eval_interval": _ANY_STEP_UNIT,
    "console_log_interval": (("ba",), "Composer's console logger counts batches or epochs"),
    "callbacks.captions.interval": (("ba",), "the captions callback counts batches"),
}


def _duration_unit(value: str, key: str) -> str:
    from composer.core import Time
    try:
        unit = Time.from_timestring(value).unit.value
    except (ValueError, TypeError):
        raise ConfigError(f"{key}: not a duration like '1000ba': {value!r}") from None
    allowed, why = _DURATION_UNITS[key]
    if unit not in allowed:
        raise ConfigError(f"{key}: use {', '.join(allowed)} units ({why}), got {value!r}")
    return unit


def _source_config_class():
    # The per-source schema lives beside the loader that reads it; imported on use, as recipe.data brings in
    # torch and Streaming and `--help` / a config error should not wait for them.
    from recipe.data.sources import SourceConfig
    return SourceConfig


# llm-foundry names a user may bring: one line saying what to write here, not a bare "unknown key".
_FOREIGN_KEYS = {
    "fsdp_config": "use parallelism_config.fsdp instead (Composer's FSDP keys, e.g. "
                   "parallelism_config.fsdp.sharding_strategy=FULL_SHARD)",
    "device_eval_batch_size": "use eval_data.sources.<name>.batch_size (per device) instead",
    "train_loader": "use train_data instead (named sources, each with its own per-device batch_size)",
    "eval_loader": "use eval_data instead (named held-out sources)",
}
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def validate(raw: dict) -> TrainConfig:
    """Check a resolved config dict against the schema and cross-key rules; returns the typed config."""
    for key, what in _FOREIGN_KEYS.items():
        if key in raw:
            raise ConfigError(f"{key}: {what}")
    if raw.get("device_train_microbatch_size") == "auto":
        # Composer starts its search at the train loader's batch_size, which a step of several per-source
        # batches does not have, and its halving would change the sources' mix within a microbatch.
        raise ConfigError("device_train_microbatch_size: 'auto' does not apply to per-source batches; set an "
                          "integer (lower it on out-of-memory)")
    _reject_unused_eval_keys(raw)
    cfg: TrainConfig = build_dataclass(TrainConfig, raw)
    source_cls = _source_config_class()
    for loader_key in ("train_data", "eval_data"):
        data = getattr(cfg, loader_key)
        if data is None:
            continue
        if not data.sources:
            raise ConfigError(f"{loader_key}.sources: at least one source is required")
        data.sources = {name: build_value(source_cls, src, f"{loader_key}.sources.{name}")
                        for name, src in data.sources.items()}
        for name, src in data.sources.items():
            _check_source(src, f"{loader_key}.sources.{name}")
    if cfg.eval_data is not None and set(cfg.eval_data.sources) - set(cfg.train_data.sources):
        extra = sorted(set(cfg.eval_data.sources) - set(cfg.train_data.sources))
        raise ConfigError(f"eval_data.sources: {extra} are not training sources (losses are per training source)")

    fsdp = cfg.parallelism_config.fsdp if cfg.parallelism_config else None
    if cfg.train_data.microbatches == "auto":
        cfg.train_data.microbatches = "per_source" if fsdp is not None else "mixed"
    mb = cfg.device_train_microbatch_size
    sizes = {name: src.batch_size for name, src in cfg.train_data.sources.items()}
    largest = max(sizes.values())
    if mb <= 0:
        raise ConfigError(f"device_train_microbatch_size={mb} must be a positive integer")
    if cfg.train_data.microbatches == "mixed":  # per_source cuts each source on its own: any size works
        if largest % mb:
            raise ConfigError(f"device_train_microbatch_size={mb} must divide the largest per-device source batch "
                              f"({largest}; batch sizes {sizes})")
        chunks = largest // mb  # recipe.data.split_batch cuts every source into this many chunks
        for name, size in sizes.items():
            if size % chunks:
                raise ConfigError(f"train_data.sources.{name}.batch_size={size} does not split into the {chunks} "
                                  f"microbatches that device_train_microbatch_size={mb} makes (batch sizes {sizes})")
        if cfg.model.cuda_graphs is True and chunks > 1:
            raise ConfigError(f"model.cuda_graphs: needs one microbatch per step (device_train_microbatch_size >= "
                              f"{largest}); gradient accumulation over graph replays is not supported")
    cfg.callbacks = _plugins("callbacks", cfg.callbacks)
    cfg.loggers = _plugins("loggers", cfg.loggers)
    gc_cfg = cfg.callbacks.get("scheduled_gc")
    if gc_cfg is not None and (gc_cfg.interval < 1 or gc_cfg.generation not in (0, 1, 2)):
        raise ConfigError(f"callbacks.scheduled_gc: need interval >= 1 and generation 0, 1 or 2, got "
                          f"{gc_cfg.interval}, {gc_cfg.generation}")

    max_unit = _duration_unit(cfg.max_duration, "max_duration")
    if _duration_unit(cfg.scheduler.t_warmup, "scheduler.t_warmup") != max_unit:
        raise ConfigError(f"scheduler.t_warmup: Composer's warmup schedulers need the unit of max_duration "
                          f"({max_unit}), got {cfg.scheduler.t_warmup!r}")
    _duration_unit(cfg.save_interval, "save_interval")
    _duration_unit(cfg.eval_interval, "eval_interval")
    _duration_unit(cfg.console_log_interval, "console_log_interval")
    captions = cfg.callbacks.get("captions")
    if captions is not None:
        _duration_unit(captions.interval, "callbacks.captions.interval")
        if not captions.images:
            raise ConfigError("callbacks.captions.images: list at least one image file")
        for i, image in enumerate(captions.images):
            _check_exists(image, f"callbacks.captions.images[{i}]", "image file")

    t = cfg.model.trainable
    if not (t.perceiver or t.cross_attn or t.new_embeddings or t.lm_embeddings or t.lm_norms
            or t.lm_last_n_layers or t.vision_last_n_blocks):
        raise ConfigError("model.trainable: nothing would train; enable at least one part")
    if len(cfg.optimizer.betas) != 2:
        raise ConfigError(f"optimizer.betas: expected two numbers, got {cfg.optimizer.betas}")
    if cfg.model.vision_name.startswith("local-dir:"):
        _check_exists(cfg.model.vision_name[len("local-dir:"):], "model.vision_name", "open_clip model folder")
    for key in ("lm_path", "tokenizer_path"):
        value = getattr(cfg.model, key)
        if value is not None and _looks_local(value):
            _check_exists(value, f"model.{key}", "local model folder")
    ckpt = cfg.model.openflamingo_checkpoint
    if ckpt is not None and not is_hub_id(ckpt):  # a Hub repo id is fetched when the model is built
        _check_exists(ckpt, "model.openflamingo_checkpoint", "checkpoint file")
    if cfg.load_path is not None and not cfg.autoresume:
        _check_exists(cfg.load_path, "load_path", "checkpoint")

    device = cfg.device or ("gpu" if _cuda_available() else "cpu")
    if device == "cpu" and cfg.precision != "fp32":
        raise ConfigError(f"precision: CPU training supports only fp32, got {cfg.precision!r} (set precision=fp32)")
    _resolve_auto(cfg, device, fsdp is not None, one_microbatch=mb >= largest)
    if cfg.model.cuda_graphs:
        reasons = [why for bad, why in ((not cfg.model.compile_blocks, "model.compile_blocks=true"),
                                        (device == "cpu", "a GPU"),
                                        (fsdp is not None, "no FSDP"),
                                        (cfg.activation_checkpointing, "no activation checkpointing"),
                                        (cfg.train_data.microbatches != "mixed", "train_data.microbatches=mixed"))
                   if bad]
        if reasons:
            raise ConfigError(f"model.cuda_graphs: needs {', '.join(reasons)}")
    if cfg.model.frozen_dtype == "bf16" and cfg.precision != "amp_bf16":
        raise ConfigError("model.frozen_dtype: bf16 frozen weights need precision amp_bf16")
    if fsdp is not None:
        if device == "cpu":
            raise ConfigError("parallelism_config.fsdp: FSDP needs CUDA GPUs; drop it for CPU runs (DDP is used)")
        if not fsdp.use_orig_params:
            raise ConfigError("parallelism_config.fsdp.use_orig_params: must be true (frozen and trainable "
                              "parameters, two weight-decay groups)")
        if fsdp.activation_checkpointing and fsdp.activation_checkpointing_reentrant:
            raise ConfigError("parallelism_config.fsdp.activation_checkpointing_reentrant: must be false "
                              "(reentrant checkpoints drop gradients of blocks whose inputs are frozen)")
        if cfg.activation_checkpointing:
            raise ConfigError("activation_checkpointing: with FSDP set parallelism_config.fsdp."
                              "activation_checkpointing instead")
        if fsdp.sharding_strategy == "HYBRID_SHARD" and not fsdp.data_parallel_replicate_degree:
            raise ConfigError("parallelism_config.fsdp.data_parallel_replicate_degree: HYBRID_SHARD needs it "
                              "(number of nodes)")
    if cfg.autoresume and cfg.save_folder is None:
        raise ConfigError("autoresume: needs save_folder (where the run's checkpoints live)")
    if cfg.save_weights_only and cfg.autoresume:
        raise ConfigError("save_weights_only: autoresume needs full checkpoints (optimizer, scheduler, data "
                          "position); set autoresume=false")
    if cfg.eval_first and cfg.eval_data is None:
        raise ConfigError("eval_first: needs eval_data")
    if cfg.python_log_level is not None and cfg.python_log_level.lower() not in _LOG_LEVELS:
        raise ConfigError(f"python_log_level: expected one of {', '.join(_LOG_LEVELS)}, got {cfg.python_log_level!r}")
    world = _launched_world_size()
    step = sum(sizes.values()) * world
    if cfg.global_train_batch_size is not None and cfg.global_train_batch_size != step:
        raise ConfigError(f"global_train_batch_size={cfg.global_train_batch_size}: the per-device source batches "
                          f"give {' + '.join(map(str, sizes.values()))} x {world} process(es) = {step}; set "
                          f"train_data.sources.<name>.batch_size (per device) instead")
    for name, src in cfg.train_data.sources.items():
        if src.epoch_size is not None and src.epoch_size < src.batch_size * world:
            raise ConfigError(f"train_data.sources.{name}.epoch_size={src.epoch_size}: holds no full global batch "
                              f"({world} process(es) x batch_size {src.batch_size} = {src.batch_size * world})")
    guard = cfg.callbacks.get("spike_guard")
    if guard is not None:
        if not cfg.autoresume:
            raise ConfigError("callbacks.spike_guard: rolls back to the run's own checkpoints; needs autoresume=true "
                              "and a save_folder")
        if guard.window < 1 or guard.factor <= 1 or guard.skip_batches < 1 or guard.max_rollbacks < 0:
            raise ConfigError(f"callbacks.spike_guard: need window >= 1, factor > 1, skip_batches >= 1, "
                              f"max_rollbacks >= 0; got {vars(guard)}")
    if cfg.save_num_checkpoints_to_keep == 0 and (cfg.save_folder is None or "://" not in cfg.save_folder):
        raise ConfigError("save_num_checkpoints_to_keep: 0 keeps no local checkpoint; use it only with a "
                          "remote save_folder")
    return cfg


def _plugins(section: str, entries: dict[str, Any]) -> dict[str, Any]:
    """`callbacks` / `loggers`: name -> checked arguments (a schema dataclass for the recipe's own), off ones
    dropped."""
    from recipe import registry

    known = registry.CALLBACKS if section == "callbacks" else registry.LOGGERS
    out = {}
    for name, kwargs in entries.items():
        path = f"{section}.{name}"
        if kwargs is None or kwargs is False:  # lets a command line turn off what a YAML lists
            continue
        if name in registry.ELSEWHERE:
            raise ConfigError(f"{path}: {registry.ELSEWHERE[name]}")
        if name not in known:
            close = suggest(name, list(known))
            hint = f"did you mean '{section}.{close}'?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{path}: unknown {section[:-1]} ({hint})")
        kwargs = {} if kwargs is True else kwargs
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{path}: expected a mapping of its arguments (or true / null), got {describe(kwargs)}")
        if name in OWN_SCHEMAS:
            out[name] = build_dataclass(OWN_SCHEMAS[name], kwargs, path)
            continue
        extra = EXTRA_KWARGS.get(name, {})
        for key, tp in extra.items():
            if key in kwargs:
                build_value(tp, kwargs[key], f"{path}.{key}")
        _check_kwargs(registry.resolve(known[name]), {k: v for k, v in kwargs.items() if k not in extra}, path,
                      extra=list(extra))
        package = registry.PACKAGES.get(name)
        if package and kwargs.get("mode") != "disabled" and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{path}: needs the {package} package (pip install {package})")
        out[name] = kwargs
    return out


def _check_kwargs(cls: type, kwargs: dict, path: str, extra: list[str]) -> None:
    """`kwargs` against `cls`'s constructor: known names, required ones present, values of the annotated
    types where the schema walker knows the type (Composer checks the rest itself)."""
    params = inspect.signature(cls).parameters
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    # A bare (*args, **kwargs) constructor (NaNMonitor, FreeOutputs) only forwards to Callback, which takes none.
    open_ended = named and any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key not in named and not open_ended:
            options = list(named) + extra
            close = suggest(str(key), options)
            hint = (f" (did you mean '{path}.{close}'?)" if close else
                    f" (known keys: {', '.join(options)})" if options else f" ({cls.__name__} takes no arguments)")
            raise ConfigError(f"unknown key '{path}.{key}'{hint}")
    for name, p in named.items():
        if p.default is p.empty and name not in kwargs:
            raise ConfigError(f"missing required key '{path}.{name}'")
    hints = typing.get_type_hints(cls.__init__)
    for key, value in kwargs.items():
        if key in hints:
            try:
                build_value(hints[key], value, f"{path}.{key}")
            except TypeError:  # a type the walker does not know (Time, callables): left to the class
                pass


def _launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))  # set by the composer launcher before validation runs


def _resolve_auto(cfg: TrainConfig, device: str, fsdp: bool, one_microbatch: bool) -> None:
    """Replace `auto` model settings by the fastest safe choice for this device, GPU count and parallelism
    (docs/PERFORMANCE.md measured each); `cfg.auto_choices` records what was chosen."""
    m = cfg.model
    world = _launched_world_size()
    gpu = device == "gpu"
    rules = {
        "frozen_dtype": lambda: "bf16" if cfg.precision == "amp_bf16" else "fp32",
        "compile_blocks": lambda: gpu and not fsdp,  # compiled blocks failed inside FSDP1 units (torch 2.11)
        "cuda_graphs": lambda: (m.compile_blocks is True and gpu and not fsdp and world == 1 and one_microbatch
                                and not cfg.activation_checkpointing and cfg.train_data.microbatches == "mixed"),
    }
    for key, choose in rules.items():  # in order: cuda_graphs depends on the resolved compile_blocks
        if getattr(m, key) == "auto":
            setattr(m, key, choose())
            cfg.auto_choices[f"model.{key}"] = getattr(m, key)


def _check_source(src, key: str):
    """Local MDS roots must exist and be complete (index.json is written last)."""
    for name, stream in src.streams.items():
        if "://" in stream.remote:
            continue
        _check_exists(stream.remote, f"{key}.streams.{name}.remote", "MDS folder")
        if not os.path.isfile(os.path.join(stream.remote, "index.json")):
            raise ConfigError(f"{key}.streams.{name}.remote: no index.json in {stream.remote} (not an MDS root, "
                              "or its conversion did not finish)")


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()
