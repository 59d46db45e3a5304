"""The training configuration's schema: one dataclass per section, with defaults and what each key means.
(Per-source keys: `recipe.data.sources.SourceConfig`, beside the loader that reads them.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


class ConfigError(ValueError):
    """A configuration problem, reported to the user as a single line."""


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
OWN_SCHEMAS = {"captions": CaptionsConfig, "scheduled_gc": ScheduledGCConfig, "spike_guard": SpikeGuardConfig,
                "jsonl": JSONLConfig}
# wandb.init's `mode` and `dir` beside WandBLogger's own arguments (the builder passes them in init_kwargs).
EXTRA_KWARGS = {"wandb": {"mode": Literal["online", "offline", "disabled"], "dir": Optional[str]}}


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
