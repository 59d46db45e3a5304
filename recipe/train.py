"""Train a Flamingo model with Composer from a YAML config.

    composer [-n GPUS] recipe/train.py yamls/flamingo-3b.yaml [dotted.key=value ...]
    flamingo-train yamls/demo.yaml max_duration=20ba        # one process (or: python recipe/train.py ...)

The config is validated before anything heavy starts; a bad config exits with one line on stderr.
"""

from __future__ import annotations

import os
import sys

# Run as a script (`composer recipe/train.py`), Python puts recipe/ first on sys.path; none of its module
# names is a stdlib or installed top-level name, so nothing is shadowed (tests/test_entry_points.py checks).
from recipe.callbacks.spike_guard import SpikeDetected, SpikeGuardExhausted
from recipe.checkpoints.resume import ResumeError
from recipe.config import ConfigError, TrainConfig, load_config, validate
from recipe.hub import CheckpointNotFound
from recipe.preflight import PreflightError, check_urls


def _resume_point(cfg: TrainConfig, signature: dict, spike_history: list | None) -> tuple[str | None, bool]:
    """(load_path, weights_only): the run's newest verified checkpoint when autoresume finds one (rank 0
    decides, every rank gets its answer), else `load_path` as configured. After a spike, the checkpoint is
    one from before it, and the spike's skip window starts no earlier than that checkpoint."""
    from composer.utils import dist, format_name_with_dist

    from recipe.checkpoints.manifest import checkpoint_batch
    from recipe.checkpoints.resume import find_resume_checkpoint

    if not cfg.autoresume:
        return cfg.load_path, cfg.load_weights_only
    pending = spike_history[-1] if spike_history and "skip" not in spike_history[-1] else None
    answer: list = [None]
    if dist.get_global_rank() == 0:
        try:
            answer[0] = find_resume_checkpoint(
                format_name_with_dist(cfg.save_folder, cfg.run_name), signature=signature,
                allow_data_change=cfg.allow_data_change_on_resume,
                before_batch=None if pending is None else pending["batch"] + 1,
                log=lambda line: print(line, file=sys.stderr, flush=True))
        except ResumeError as e:
            answer[0] = e
    dist.broadcast_object_list(answer, src=0)
    if isinstance(answer[0], ResumeError):
        raise answer[0]
    found = answer[0]
    if pending is not None:
        start = checkpoint_batch(os.path.basename(found)) if found else 0
        pending["skip"] = [max(start, pending["batch"] - pending["skip_batches"] + 1), pending["batch"]]
        if dist.get_global_rank() == 0:
            print(f"spike guard: rolled back to {os.path.basename(found) if found else 'the start'}; batches "
                  f"{pending['skip'][0]}-{pending['skip'][1]} will be drawn but not trained on", file=sys.stderr,
                  flush=True)
    return (found, False) if found else (cfg.load_path, cfg.load_weights_only)


def _configure_python_logging(level: str) -> None:
    """llm-foundry's `python_log_level`: its line format (with the rank), the level on our and Composer's loggers."""
    import logging

    from composer.utils import dist

    logging.basicConfig(format=f"%(asctime)s: rank{dist.get_global_rank()}[%(process)d][%(threadName)s]: "
                               "%(levelname)s: %(name)s: %(message)s")
    for name in ("composer", "recipe"):
        logging.getLogger(name).setLevel(level.upper())


def build_trainer(raw_config: dict, spike_history: list | None = None):
    """Validate `raw_config` (a resolved plain dict) and build the `composer.Trainer` it describes.
    `spike_history`: the spike guard's record when rebuilding after a rollback."""
    cfg: TrainConfig = validate(raw_config)
    if cfg.python_log_level is not None:
        _configure_python_logging(cfg.python_log_level)
    if spike_history is None:  # a rollback rebuilds with URLs already checked
        check_urls(cfg)

    from composer import Trainer
    from composer.utils import dist, get_device, reproducibility

    from recipe import trainer_parts

    device = get_device(cfg.device)
    on_gpu = device.name == "gpu"
    # Streaming builds its shared-memory state with collectives: process group and seeds come first.
    dist.initialize_dist(device, timeout=cfg.dist_timeout)
    reproducibility.seed_all(cfg.seed)
    if cfg.auto_choices and dist.get_global_rank() == 0:
        chosen = ", ".join(f"{k}={str(v).lower()}" for k, v in cfg.auto_choices.items())
        print(f"auto settings ({device.name}, {dist.get_world_size()} process(es)): {chosen}", file=sys.stderr, flush=True)

    signature = trainer_parts.data_signature(cfg.train_data, dist.get_world_size())
    load_path, load_weights_only = _resume_point(cfg, signature, spike_history)

    flamingo, tokenizer, image_transform = trainer_parts.build_flamingo_model(cfg.model)
    if cfg.activation_checkpointing:
        trainer_parts.apply_activation_checkpointing(flamingo)
    train_spec = trainer_parts.build_train_dataloader(cfg.train_data, tokenizer, image_transform, cfg.seed, cfg.run_name)
    model = trainer_parts.build_composer_model(flamingo, cfg.train_data, train_spec, cfg.model)
    fsdp = cfg.parallelism_config.fsdp if cfg.parallelism_config else None
    evaluators = None
    if cfg.eval_data is not None:
        evaluators = trainer_parts.build_evaluators(cfg.eval_data, tokenizer, image_transform, cfg.seed, cfg.run_name)

    trainer = Trainer(
        run_name=cfg.run_name,
        model=model,
        train_dataloader=train_spec,
        eval_dataloader=evaluators,
        eval_interval=cfg.eval_interval if evaluators else 1,  # Composer warns about an unused interval
        eval_subset_num_batches=cfg.eval_subset_num_batches,
        max_duration=cfg.max_duration,
        optimizers=trainer_parts.build_optimizer(model, cfg.optimizer, on_gpu),
        schedulers=trainer_parts.build_scheduler(cfg.scheduler),
        step_schedulers_every_batch=True,
        algorithms=trainer_parts.build_algorithms(cfg),
        callbacks=trainer_parts.build_callbacks(cfg.callbacks, tokenizer, image_transform, on_gpu, cfg.log_to_console,
                                           train_spec, spike_history)
        + ([] if cfg.save_folder is None else [trainer_parts.build_checkpoint_saver(cfg, signature, raw_config)]),
        loggers=trainer_parts.build_loggers(cfg.loggers, cfg.run_name),
        device=device,
        precision=cfg.precision,
        device_train_microbatch_size=cfg.device_train_microbatch_size,
        parallelism_config=None if fsdp is None else {"fsdp": vars(fsdp).copy()},
        seed=cfg.seed,
        dist_timeout=cfg.dist_timeout,
        # Saving: the VerifiedCheckpointSaver callback. Resuming: `_resume_point` picked the checkpoint.
        load_path=load_path,
        load_weights_only=load_weights_only,
        log_to_console=cfg.log_to_console,
        console_log_interval=cfg.console_log_interval,
        progress_bar=cfg.progress_bar,
    )
    trainer_parts.log_resolved_config(trainer, cfg)
    return trainer


def main(raw_config: dict):
    """Build the trainer, train to `max_duration`, return the trainer. A spike-guard rollback rebuilds the
    trainer from the newest verified checkpoint before the spike and trains on."""
    spike_history = None
    while True:
        trainer = build_trainer(raw_config, spike_history)
        try:
            # `eval_first` (validated by build_trainer): Composer 0.32's fit() has no such switch; llm-foundry
            # also calls eval() itself, only at batch 0 so that a resumed run does not evaluate again.
            if raw_config.get("eval_first") and int(trainer.state.timestamp.batch) == 0:
                trainer.eval()
            trainer.fit()
            return trainer
        except SpikeDetected as spike:
            from composer.utils import dist

            if dist.get_global_rank() == 0:
                print(f"spike guard: {spike}; rolling back", file=sys.stderr, flush=True)
            trainer.close()
            spike_history = spike.history


def cli(argv: list[str] | None = None) -> int:
    """The command line (also `flamingo-train`); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    try:
        raw = load_config(argv[0], argv[1:])
        validate(raw)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        main(raw)
    except PreflightError as e:
        print(f"preflight: {e}", file=sys.stderr)
        return 2
    except (CheckpointNotFound, ResumeError) as e:  # a released checkpoint missing; no safe checkpoint to resume
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SpikeGuardExhausted as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
