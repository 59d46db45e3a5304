"""Factories that turn the validated config sections into the objects `composer.Trainer` takes."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import torch
from composer.algorithms import GradientClipping
from composer.optim import (ConstantWithWarmupScheduler, CosineAnnealingWithWarmupScheduler,
                            LinearWithWarmupScheduler)

from recipe import registry
from recipe.config import (DataConfig, EvalDataConfig, ModelConfig, OptimizerConfig, SchedulerConfig, TrainConfig,
                           redact)


def build_flamingo_model(cfg: ModelConfig):
    """-> (Flamingo, tokenizer, image_transform), pretrained weights loaded and frozen parts cast."""
    from composer.utils import dist

    from recipe.hub import resolve_openflamingo_checkpoint
    from recipe.model import build_flamingo, load_openflamingo_checkpoint
    from recipe.model.trainable import format_counts, set_trainable

    if "auto" in (cfg.frozen_dtype, cfg.compile_blocks, cfg.cuda_graphs):
        raise ValueError("model: 'auto' settings are resolved by recipe.config.validate; validate the config first")
    flamingo, tokenizer, image_transform = build_flamingo(
        cfg.vision_name, cfg.vision_pretrained, cfg.lm_path, tokenizer_path=cfg.tokenizer_path,
        cross_attn_every_n_layers=cfg.cross_attn_every_n_layers, decoder_layers_attr=cfg.decoder_layers_attr,
        embeddings_attr=cfg.embeddings_attr, lm_head_attr=cfg.lm_head_attr,
        lm_attn_implementation=cfg.lm_attn_implementation,
        vision_final_ln=cfg.vision_final_ln, trust_remote_code=cfg.trust_remote_code,
        lm_random_init=cfg.lm_random_init,
        perceiver_kwargs=vars(cfg.perceiver).copy(), cross_attn_kwargs=vars(cfg.cross_attn).copy())
    if cfg.openflamingo_checkpoint is not None:
        # One download per node (the others find it in the HF cache); read with torch.load(weights_only=True):
        # a foreign file yields tensors, never code.
        if dist.get_local_rank() == 0:
            resolve_openflamingo_checkpoint(cfg.openflamingo_checkpoint)
        dist.barrier()
        report = load_openflamingo_checkpoint(flamingo, resolve_openflamingo_checkpoint(cfg.openflamingo_checkpoint))
        if dist.get_global_rank() == 0:
            print(f"model.openflamingo_checkpoint {cfg.openflamingo_checkpoint}: {report.summary()}",
                  file=sys.stderr, flush=True)
    counts = set_trainable(flamingo, **vars(cfg.trainable))
    if dist.get_global_rank() == 0:
        print(f"trainable parameters per part:\n{format_counts(counts)}", file=sys.stderr, flush=True)
    # After set_trainable: only units left entirely frozen are cast.
    if cfg.frozen_dtype == "bf16":
        cast_frozen_units(flamingo, torch.bfloat16)
    torch.backends.cuda.enable_cudnn_sdp(cfg.cudnn_attention)
    if cfg.cuda_graphs and dist.get_world_size() > 1:
        raise ValueError("model.cuda_graphs: one GPU only (not measured with DDP gradient buckets)")
    if cfg.compile_blocks:
        flamingo.compile_blocks(cuda_graphs=cfg.cuda_graphs)
    return flamingo, tokenizer, image_transform


def build_composer_model(flamingo: torch.nn.Module, data: DataConfig, train_spec, model_cfg: ModelConfig):
    import dataclasses

    from recipe.composer_model import FlamingoComposerModel

    return FlamingoComposerModel(
        flamingo,
        loss_multipliers={name: src.loss_multiplier for name, src in data.sources.items()},
        device_batch_sizes={name: src.batch_size for name, src in data.sources.items()},
        num_samples_in_batch=train_spec.get_num_samples_in_batch, model_config=dataclasses.asdict(model_cfg))


def apply_activation_checkpointing(flamingo: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing of the modules `Flamingo.activation_checkpointing_fn` picks
    (reentrant checkpoints would drop the gradients of blocks whose inputs are frozen)."""
    from functools import partial

    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl, apply_activation_checkpointing as apply, checkpoint_wrapper)

    apply(flamingo, checkpoint_wrapper_fn=partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
          check_fn=flamingo.activation_checkpointing_fn)


def cast_frozen_units(flamingo: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast every FSDP unit (see `Flamingo.fsdp_wrap_fn`) whose parameters are all frozen: vision blocks
    and decoder layers not unfrozen by `model.trainable` (and a frozen Perceiver / xattn block). Units stay dtype-uniform, which FSDP requires; the root (embeddings, norms,
    added-token rows) stays fp32."""
    for module in flamingo.modules():
        params = list(module.parameters())
        if params and module is not flamingo and flamingo.fsdp_wrap_fn(module) \
                and not any(p.requires_grad for p in params):
            module.to(dtype)


def optimizer_groups(model: torch.nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Parameter groups of the trainable parameters: the gated cross-attention blocks get `weight_decay`
    (gates and norms included, as the reference does); matrices of unfrozen LM layers and vision blocks get
    `weight_decay_backbone`; the rest (Perceiver, added-token rows, backbone norms / biases / embedding
    tables) gets none. Empty groups are dropped."""
    from recipe.model.trainable import partition

    from recipe.model import Flamingo

    flamingo = next(m for m in model.modules() if isinstance(m, Flamingo))
    parts = partition(flamingo)
    xattn = {id(p) for p in parts["cross_attn"]}
    backbone = {id(p) for name in ("lm_layers", "vision_blocks") for p in parts[name] if p.ndim >= 2}
    backbone -= {id(p) for m in flamingo.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in trainable if id(p) in xattn], "weight_decay": cfg.weight_decay},
        {"params": [p for p in trainable if id(p) in backbone], "weight_decay": cfg.weight_decay_backbone},
        {"params": [p for p in trainable if id(p) not in xattn and id(p) not in backbone], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig, on_gpu: bool) -> torch.optim.Optimizer:
    """AdamW over `optimizer_groups`."""
    return torch.optim.AdamW(optimizer_groups(model, cfg), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             fused=on_gpu or None)


_SCHEDULERS = {
    "constant_with_warmup": lambda c: ConstantWithWarmupScheduler(t_warmup=c.t_warmup),
    "linear_with_warmup": lambda c: LinearWithWarmupScheduler(t_warmup=c.t_warmup, alpha_f=c.alpha_f),
    "cosine_with_warmup": lambda c: CosineAnnealingWithWarmupScheduler(t_warmup=c.t_warmup, alpha_f=c.alpha_f),
}


def build_scheduler(cfg: SchedulerConfig):
    return _SCHEDULERS[cfg.name](cfg)


def build_algorithms(cfg: TrainConfig) -> list:
    clip = cfg.gradient_clipping
    return [] if clip is None else [GradientClipping(clipping_type=clip.clipping_type,
                                                     clipping_threshold=clip.clipping_threshold)]


def _arguments(kwargs) -> dict[str, Any]:
    """Validated arguments: a schema dataclass for the recipe's own classes, else a mapping."""
    import dataclasses

    return dataclasses.asdict(kwargs) if dataclasses.is_dataclass(kwargs) else dict(kwargs)


def build_callbacks(cfg: dict[str, Any], tokenizer, image_transform, on_gpu: bool, console: bool,
                    train_spec, spike_history: Optional[list] = None) -> list:
    """The validated `callbacks` section (name -> arguments, recipe/registry.py), plus the rejection counter."""
    from recipe.callbacks import RejectionCounter

    # What the config cannot hold, per callback.
    runtime = {"captions": {"tokenizer": tokenizer, "image_transform": image_transform, "print_to_console": console},
               "spike_guard": {"history": spike_history}}
    callbacks = [RejectionCounter(train_spec.dataloader.dataset.rejection_reasons)]
    for name, kwargs in cfg.items():
        if name == "memory_monitor" and not on_gpu:  # CUDA memory statistics only
            continue
        callbacks.append(registry.resolve(registry.CALLBACKS[name])(**_arguments(kwargs), **runtime.get(name, {})))
    return callbacks


def data_signature(cfg: DataConfig, world_size: int) -> dict[str, Any]:
    """What a resumed run's data order depends on: per source its global batch, streams and shaping
    (not the loss multiplier, nor cache settings)."""
    import dataclasses

    def source(src) -> dict[str, Any]:
        d = dataclasses.asdict(src)
        for key in ("batch_size", "loss_multiplier", "predownload", "cache_limit"):
            d.pop(key)
        d["streams"] = {n: {k: v for k, v in st.items() if k != "local"} for n, st in d["streams"].items()}
        return {"global_batch": src.batch_size * world_size, **d}

    return {name: source(src) for name, src in cfg.sources.items()}


def build_checkpoint_saver(cfg: TrainConfig, signature: dict[str, Any], raw_config: dict[str, Any]):
    """Composer's saver as `Trainer(save_folder=...)` would build it, writing a manifest beside every
    checkpoint (recipe/checkpoints/saver.py)."""
    from composer.utils import parse_uri

    from recipe.checkpoints.manifest import config_hash
    from recipe.checkpoints.saver import VerifiedCheckpointSaver

    filename = "ep{epoch}-ba{batch}-rank{rank}.pt"
    remote_dir = parse_uri(cfg.save_folder)[2]
    return VerifiedCheckpointSaver(
        folder=cfg.save_folder, filename=filename,
        remote_file_name=os.path.join(remote_dir, filename) if remote_dir else filename,
        # Resuming lists the folder; a remote `latest` pointer would only add an upload that waits for the
        # checkpoint's own (30 s retries at the end of training).
        latest_filename="latest-rank{rank}.pt", latest_remote_file_name=None,
        overwrite=cfg.save_overwrite or cfg.autoresume, save_interval=cfg.save_interval,
        num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep, weights_only=cfg.save_weights_only,
        signature=signature, config_sha256=config_hash(redact(raw_config)))


def build_loggers(cfg: dict[str, Any], run_name: str) -> list:
    """The validated `loggers` section (name -> arguments, recipe/registry.py)."""
    loggers = []
    for name, kwargs in cfg.items():
        kwargs = _arguments(kwargs)
        if name == "jsonl":
            kwargs["path"] = kwargs["path"].replace("{run_name}", run_name)
        if name == "wandb":
            kwargs = _wandb_arguments(kwargs)
            if kwargs is None:
                continue
        loggers.append(registry.resolve(registry.LOGGERS[name])(**kwargs))
    return loggers


def _wandb_arguments(kwargs: dict[str, Any]) -> Optional[dict[str, Any]]:
    """WandBLogger's arguments, with `mode` and `dir` moved into wandb.init's; None when disabled."""
    import wandb

    init_kwargs = dict(kwargs.pop("init_kwargs", None) or {})
    for key in ("mode", "dir"):
        value = kwargs.pop(key, None)
        if value is not None:
            init_kwargs[key] = value
    mode = init_kwargs.get("mode") or os.environ.get("WANDB_MODE")
    if mode == "disabled":
        return None
    if "dir" in init_kwargs:
        os.makedirs(init_kwargs["dir"], exist_ok=True)
    # No run metadata: it records the command line, where a secret may have been passed as an override (the
    # config arrives masked, through `log_resolved_config`). allow_offline_artifacts=False: wandb 0.18
    # otherwise asks the server about every logged table, which blocks for minutes when offline.
    init_kwargs["settings"] = wandb.Settings(_disable_meta=True, allow_offline_artifacts=mode != "offline")
    return {**kwargs, "init_kwargs": init_kwargs}


def resolved_config(cfg: TrainConfig) -> dict[str, Any]:
    """The validated config as plain data (defaults filled in, `auto` settings chosen), credentials masked."""
    import dataclasses

    return redact(dataclasses.asdict(cfg))


def resolved_config_path(cfg: TrainConfig) -> Optional[str]:
    """Where `resolved_config.yaml` goes: beside the JSONL log, else in a local save folder; None without both."""
    from composer.utils import format_name_with_dist

    jsonl = cfg.loggers.get("jsonl")
    if jsonl is not None:
        folder = os.path.dirname(os.path.abspath(jsonl.path.replace("{run_name}", cfg.run_name)))
    elif cfg.save_folder is not None and "://" not in cfg.save_folder:
        folder = format_name_with_dist(cfg.save_folder, cfg.run_name)
    else:
        return None
    return os.path.join(folder, "resolved_config.yaml")


def log_resolved_config(trainer, cfg: TrainConfig) -> None:
    """The resolved config to every logger destination (W&B config, MLflow params, TensorBoard hparams, the
    console at fit start) and, from rank 0, to `resolved_config_path`."""
    import yaml
    from composer.utils import dist

    config = resolved_config(cfg)
    trainer.logger.log_hyperparameters(config)
    path = resolved_config_path(cfg)
    if path is not None and dist.get_global_rank() == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)


def cache_root(cfg: DataConfig | EvalDataConfig, run_name: str) -> str:
    """Where URL remotes are cached: per run, the same path on every rank of a node."""
    return cfg.cache_root or os.path.join(tempfile.gettempdir(), "flamingo-cache", run_name)


def build_train_dataloader(cfg: DataConfig, tokenizer, image_transform, seed: int, run_name: str):
    """The training DataSpec: one step = one per-device batch of every source."""
    from recipe.data.sources import build_train_dataloader as build

    return build(cfg.sources, tokenizer, image_transform, seed=seed, num_workers=cfg.num_workers,
                 cache_root=cache_root(cfg, run_name), prefetch_factor=cfg.prefetch_factor,
                 pin_memory=cfg.pin_memory, clean_stale_shm=cfg.clean_stale_shm,
                 per_source_microbatches=cfg.microbatches == "per_source")


def build_evaluators(cfg: EvalDataConfig, tokenizer, image_transform, seed: int, run_name: str) -> list:
    """One Composer Evaluator per held-out source, scored with that source's loss and perplexity."""
    from composer.core import Evaluator

    from recipe.data.sources import build_eval_dataloader

    return [Evaluator(label=f"eval_{name}",
                      dataloader=build_eval_dataloader(name, src, tokenizer, image_transform, seed=seed,
                                                       num_workers=cfg.num_workers,
                                                       cache_root=cache_root(cfg, run_name),
                                                       pin_memory=cfg.pin_memory),
                      metric_names=[f"CrossEntropy/{name}", f"Perplexity/{name}"])
            for name, src in cfg.sources.items()]
