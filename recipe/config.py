"""The training configuration: a typed schema (dataclasses) and its validation.

A YAML file plus `dotted.key=value` overrides is loaded with OmegaConf, resolved, and checked against
`TrainConfig` before anything heavy starts; `callbacks` and `loggers` entries against their classes'
constructors (recipe/registry.py). Every problem becomes a `ConfigError` whose message is one line
naming the offending key (unknown keys get a did-you-mean). `variables:` is free-form: it only holds
interpolation anchors (`${variables.x}`) and is not passed on.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from omegaconf import OmegaConf

from recipe.hub import is_hub_id


class ConfigError(ValueError):
    """A configuration problem, reported to the user as a single line."""


# ----------------------------------------------------------------------------------------------- schema

@dataclass
class PerceiverConfig:
    """Perceiver resampler size; the defaults are every released OpenFlamingo model's."""
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    num_latents: int = 64
    ff_mult: int = 4


@dataclass
class CrossAttentionConfig:
    """Gated cross-attention block size; the defaults are every released OpenFlamingo model's."""
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4


@dataclass
class TrainableConfig:
    """What trains (`recipe.model.trainable.set_trainable`); the defaults are the reference's choice.
    `lm_last_n_layers` / `vision_last_n_blocks`: last N decoder layers / ViT blocks, 0 none, -1 all. The whole
    LM: lm_last_n_layers=-1, lm_embeddings=true, lm_norms=true."""
    perceiver: bool = True
    cross_attn: bool = True
    new_embeddings: bool = True     # the <image> / <|endofchunk|> / <PAD> rows
    lm_embeddings: bool = False     # the LM's input embedding and output head (full vocabulary)
    lm_last_n_layers: int = 0
    lm_norms: bool = False          # the LM's norms outside its layers (final norm)
    vision_last_n_blocks: int = 0

    def __post_init__(self):
        for key in ("lm_last_n_layers", "vision_last_n_blocks"):
            if getattr(self, key) < -1:
                raise ValueError(f"{key} must be >= 0, or -1 for all, got {getattr(self, key)}")


@dataclass
class ModelConfig:
    """Arguments of `recipe.model.build_flamingo`, plus how to initialise and store the weights."""
    vision_name: str = "ViT-L-14"
    vision_pretrained: Optional[str] = "openai"
    lm_path: str = "anas-awadalla/mpt-1b-redpajama-200b"
    tokenizer_path: Optional[str] = None
    cross_attn_every_n_layers: int = 1
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    cross_attn: CrossAttentionConfig = field(default_factory=CrossAttentionConfig)
    # Where the LM keeps its decoder layers, token embedding and output head, for LMs whose traits the builder
    # cannot read (recipe/model/lm_adapters.py); `lm_head_attr: embedding` = logits from the embedding matrix.
    decoder_layers_attr: Optional[str] = None
    embeddings_attr: Optional[str] = None
    lm_head_attr: Optional[str] = None
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    lm_attn_implementation: str = "sdpa"
    vision_final_ln: bool = False
    # Run the model repo's own Python code (some hub LMs, e.g. MosaicGPT checkpoints, need it). Off by default.
    trust_remote_code: bool = False
    # Released OpenFlamingo weights loaded before the first step: a `checkpoint.pt`, a folder holding one, or a
    # Hugging Face Hub repo id (openflamingo/OpenFlamingo-3B-vitl-mpt1b); ignored once the run resumes from its
    # own checkpoints.
    openflamingo_checkpoint: Optional[str] = None
    # Store the frozen vision encoder / decoder blocks in bf16 (needs precision amp_bf16): halves their memory.
    # auto: bf16 under amp_bf16, else fp32.
    frozen_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    # Random weights from the LM's config (benchmarks): lm_path then needs only a config.json.
    lm_random_init: bool = False
    # torch.compile each repeated block (vision, Perceiver, decoder layers, xattn): faster GPU steps after a
    # one-off compile of about a minute. Under FSDP with torch 2.11 the compile failed (docs/PERFORMANCE.md).
    # auto: on for GPU runs without FSDP.
    compile_blocks: Union[bool, Literal["auto"]] = "auto"
    # Let SDPA pick cuDNN attention kernels (a process-wide switch). Off: on H100/H200 with torch 2.11 each
    # cuDNN attention call cost ~0.5 ms of host time, more than most of this model's attention kernels take on
    # the GPU, and the step waited on the host (docs/PERFORMANCE.md); flash / memory-efficient kernels run instead.
    cudnn_attention: bool = False
    # CUDA graphs for the compiled decoder layers and xattn blocks (needs compile_blocks; one GPU, no activation
    # checkpointing, one microbatch per step). The LAION pass's small kernels leave the GPU waiting on the host;
    # a graph replays a block's kernels in one launch. Each token shape is recorded once: use fixed shapes
    # (`pad_to_max_tokens`); other shapes (eval, caption generation) recompile and record their own.
    # auto: on where it applies (compiled blocks, one GPU, one microbatch, no checkpointing, no FSDP).
    cuda_graphs: Union[bool, Literal["auto"]] = "auto"


@dataclass
class DataConfig:
    """Named training sources (laion, mmc4, ...), each a `recipe.data.SourceConfig`; each step zips one
    per-device batch of every source."""
    sources: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 4
    prefetch_factor: Optional[int] = 2
    pin_memory: Optional[bool] = None  # None: on when CUDA is available
    cache_root: Optional[str] = None  # where URL remotes are cached (default: $TMPDIR/flamingo-cache/<run>)
    clean_stale_shm: bool = True  # remove Streaming shared memory left by dead processes
    # Training microbatches (recipe.data.sources.split_batch): `mixed` (each holds a share of every source),
    # `per_source` (each holds one source: one model pass per forward, what FSDP needs to keep units
    # sharded), `auto` (per_source under FSDP, else mixed).
    microbatches: Literal["auto", "mixed", "per_source"] = "auto"


@dataclass
class EvalDataConfig:
    """Held-out sources (same names as training), one unshuffled pass each
    (recipe.data.sources.build_eval_dataloader); only what that loader reads."""
    sources: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 4
    pin_memory: Optional[bool] = None  # None: on when CUDA is available
    cache_root: Optional[str] = None  # where URL remotes are cached (default: $TMPDIR/flamingo-cache/<run>)


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


@dataclass
class OptimizerConfig:
    """torch.optim.AdamW over the trainable parameters. `weight_decay`: the cross-attention blocks (all their
    parameters, as the reference); `weight_decay_backbone`: matrices of unfrozen LM layers / vision blocks (never
    their norms, biases or embedding tables); everything else (Perceiver, added-token rows) gets none."""
    lr: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    weight_decay: float = 0.1
    weight_decay_backbone: float = 0.0


@dataclass
class SchedulerConfig:
    name: Literal["constant_with_warmup", "linear_with_warmup", "cosine_with_warmup"] = "constant_with_warmup"
    t_warmup: str = "1875ba"
    alpha_f: float = 0.0  # final LR multiplier of linear / cosine decay


@dataclass
class GradientClippingConfig:
    clipping_type: Literal["norm", "value"] = "norm"
    clipping_threshold: float = 1.0


@dataclass
class FSDPConfig:
    """The FSDP1 settings we support (a subset of composer's FSDPConfig, with safe defaults)."""
    sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD"] = "FULL_SHARD"
    mixed_precision: Literal["DEFAULT", "PURE", "FULL"] = "DEFAULT"
    use_orig_params: bool = True
    activation_checkpointing: bool = False
    activation_checkpointing_reentrant: bool = False
    activation_cpu_offload: bool = False
    state_dict_type: Literal["full", "sharded"] = "sharded"
    limit_all_gathers: bool = True
    forward_prefetch: bool = False
    backward_prefetch: Literal["BACKWARD_PRE", "BACKWARD_POST", "NONE"] = "BACKWARD_PRE"
    sync_module_states: bool = False
    data_parallel_shard_degree: int = -1
    data_parallel_replicate_degree: Optional[int] = None
    verbose: bool = False


@dataclass
class ParallelismConfig:
    fsdp: Optional[FSDPConfig] = None


@dataclass
class CaptionsConfig:
    """Generate captions for a fixed set of images every `interval` (a W&B table, else console + JSONL)."""
    images: list[str] = field(default_factory=list)
    interval: str = "1000ba"
    prompt: str = "<image>"
    max_new_tokens: int = 20
    num_beams: int = 1


@dataclass
class ScheduledGCConfig:
    """Python's cyclic GC every `interval` batches on all ranks at once, never in between (recipe/callbacks/scheduled_gc.py)."""
    interval: int = 100
    generation: int = 1


@dataclass
class SpikeGuardConfig:
    """Roll back to the newest verified checkpoint when the global loss is NaN/Inf or above `factor` x the
    median of the last `window` steps, skipping the `skip_batches` batches ending at the spike
    (recipe/callbacks/spike_guard.py); after `max_rollbacks` spikes the run stops with a report."""
    window: int = 100
    factor: float = 3.0
    skip_batches: int = 20
    max_rollbacks: int = 3


@dataclass
class JSONLConfig:
    path: str = "runs/{run_name}/metrics.jsonl"  # `{run_name}` is filled in


# The recipe's own callbacks and loggers are checked against these (types and ranges); Composer's against
# their constructors' signatures. The builder adds what the config cannot hold (tokenizer, history, ...).
_OWN_SCHEMAS = {"captions": CaptionsConfig, "scheduled_gc": ScheduledGCConfig, "spike_guard": SpikeGuardConfig,
                "jsonl": JSONLConfig}
# wandb.init's `mode` and `dir` beside WandBLogger's own arguments (the builder passes them in init_kwargs).
_EXTRA_KWARGS = {"wandb": {"mode": Literal["online", "offline", "disabled"], "dir": Optional[str]}}


# Defaults that differ from composer.Trainer's, so a Composer habit does not mislead: load_weights_only true
# (Composer: false; load_path is a warm start, autoresume always restores everything), save_num_checkpoints_to_keep
# 1 (Composer: -1, all), save_interval 1000ba (1ep), eval_interval 2000ba (1ep), console_log_interval 10ba
# (1ba), log_to_console true (false), progress_bar false (true), dist_timeout 600 (300), seed 42 (random).
@dataclass
class TrainConfig:
    run_name: str
    model: ModelConfig
    train_data: DataConfig
    max_duration: str
    device_train_microbatch_size: int
    variables: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    # llm-foundry's key, here only a check: batches are set per source and per device
    # (train_data.sources.<name>.batch_size), and this must equal their sum x processes, the samples of one
    # step (what Composer counts in `sp`).
    global_train_batch_size: Optional[int] = None
    eval_data: Optional[EvalDataConfig] = None
    eval_interval: str = "2000ba"
    eval_first: bool = False  # evaluate once before the first step (not when resuming), as llm-foundry does
    eval_subset_num_batches: int = -1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    gradient_clipping: Optional[GradientClippingConfig] = field(default_factory=GradientClippingConfig)
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] = "amp_bf16"
    device: Optional[Literal["cpu", "gpu"]] = None
    parallelism_config: Optional[ParallelismConfig] = None
    # Recompute decoder layers and cross-attention blocks in the backward (DDP runs; under FSDP use
    # parallelism_config.fsdp.activation_checkpointing, which Composer applies).
    activation_checkpointing: bool = False
    dist_timeout: float = 600.0
    save_folder: Optional[str] = None
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = 1
    save_overwrite: bool = False
    save_weights_only: bool = False  # checkpoints hold the model only; they cannot resume a run
    autoresume: bool = False
    load_path: Optional[str] = None
    load_weights_only: bool = True
    # Resuming from a checkpoint written with another global batch, source set or sequence shaping stops the
    # run (its data order would not continue); true resumes anyway.
    allow_data_change_on_resume: bool = False
    log_to_console: bool = True
    console_log_interval: str = "10ba"
    progress_bar: bool = False
    # Level of the `composer` and `recipe` Python loggers (debug, info, ...), with llm-foundry's line format;
    # null leaves Python logging as it is.
    python_log_level: Optional[str] = None
    # name (recipe/registry.py) -> its keyword arguments; `true` = {}, null or false = off. Only what is
    # listed is built; these defaults apply when the section is absent.
    callbacks: dict[str, Any] = field(default_factory=lambda: {
        "speed_monitor": {}, "lr_monitor": {}, "memory_monitor": {}, "runtime_estimator": {}})
    loggers: dict[str, Any] = field(default_factory=lambda: {"jsonl": {}})
    # What validation chose for the keys set to `auto` (key -> value), for the startup log.
    auto_choices: dict[str, Any] = field(default_factory=dict, init=False)


# ------------------------------------------------------------------------------------------ validation

def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _build(tp, value, path: str):
    """Check `value` against the type `tp` and return it converted (dataclasses instantiated)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _build(arg, value, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            close = _suggest(str(value), [str(a) for a in typing.get_args(tp)])
            hint = f" (did you mean {close!r}?)" if close else ""
            raise ConfigError(f"{path}: expected one of {_type_name(tp)}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return build_dataclass(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_build(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        _, item = typing.get_args(tp) or (str, Any)
        return {str(k): _build(item, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


def _suggest(word: str, options: list[str]) -> Optional[str]:
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return close[0]
    return next((o for o in options if word and (o.startswith(word) or word in o)), None)


def build_dataclass(cls, values: dict, path: str = ""):
    """Instantiate dataclass `cls` from a plain mapping, rejecting unknown keys and mistyped values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    for key in values:
        if key not in fields:
            close = _suggest(str(key), list(fields))
            hint = f" (did you mean '{prefix}{close}'?)" if close else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _build(hints[name], values[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a dataclass' own __post_init__ checks
        raise ConfigError(f"{path or 'config'}: {str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------------------------- loading

def load_config(yaml_path: str, overrides: list[str] | None = None) -> dict:
    """YAML + `dotted.key=value` overrides -> one resolved plain dict."""
    if not os.path.isfile(yaml_path):
        raise ConfigError(f"config file not found: {yaml_path}")
    try:
        cfg = OmegaConf.load(yaml_path)
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides or [])))
        return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError:
        raise
    except Exception as e:  # YAML syntax errors, bad interpolations
        raise ConfigError(f"{yaml_path}: {' '.join(str(e).split())}") from None


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
        data.sources = {name: _build(source_cls, src, f"{loader_key}.sources.{name}")
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
            close = _suggest(name, list(known))
            hint = f"did you mean '{section}.{close}'?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{path}: unknown {section[:-1]} ({hint})")
        kwargs = {} if kwargs is True else kwargs
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{path}: expected a mapping of its arguments (or true / null), got {_describe(kwargs)}")
        if name in _OWN_SCHEMAS:
            out[name] = build_dataclass(_OWN_SCHEMAS[name], kwargs, path)
            continue
        extra = _EXTRA_KWARGS.get(name, {})
        for key, tp in extra.items():
            if key in kwargs:
                _build(tp, kwargs[key], f"{path}.{key}")
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
            close = _suggest(str(key), options)
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
                _build(hints[key], value, f"{path}.{key}")
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


def redact(obj, _key: str = ""):
    """A copy of a config container with credential-looking values replaced, for logs and W&B."""
    if isinstance(obj, dict):
        return {k: ("***" if _is_secret_key(str(k)) and v is not None else redact(v, str(k)))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "access_key", "credential",
                 "private_key", "auth")


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    # `tokenizer_path`, `max_new_tokens` and friends are not secrets.
    if k.startswith("tokenizer") or k.endswith("tokens") or k in ("max_new_tokens",):
        return False
    return any(word in k for word in _SECRET_WORDS)
