"""Train a Flamingo model with Composer from a YAML config.

    composer [-n GPUS] recipe/train.py yamls/flamingo-3b.yaml [dotted.key=value ...]
    python recipe/train.py yamls/demo.yaml max_duration=20ba        # one process

The config is validated before anything heavy starts; a bad config exits with one line on stderr.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # Run as a script (as `composer` does), Python puts recipe/ first on sys.path, where our modules
    # could shadow top-level packages; the package itself is installed.
    sys.path.pop(0)

from recipe.config import ConfigError, TrainConfig, load_config, validate  # noqa: E402
from recipe.hub import CheckpointNotFound  # noqa: E402


def build_trainer(raw_config: dict):
    """Validate `raw_config` (a resolved plain dict) and build the `composer.Trainer` it describes."""
    cfg: TrainConfig = validate(raw_config)

    from composer import Trainer
    from composer.utils import dist, get_device, reproducibility

    from recipe import builders

    device = get_device(cfg.device)
    on_gpu = device.name == "gpu"
    # Streaming builds its shared-memory state with collectives: process group and seeds come first.
    dist.initialize_dist(device, timeout=cfg.dist_timeout)
    reproducibility.seed_all(cfg.seed)
    if cfg.auto_choices and dist.get_global_rank() == 0:
        chosen = ", ".join(f"{k}={str(v).lower()}" for k, v in cfg.auto_choices.items())
        print(f"auto settings ({device.name}, {dist.get_world_size()} process(es)): {chosen}", file=sys.stderr, flush=True)

    flamingo, tokenizer, image_transform = builders.build_flamingo_model(cfg.model)
    if cfg.activation_checkpointing:
        builders.apply_activation_checkpointing(flamingo)
    train_spec = builders.build_train_dataloader(cfg.train_data, tokenizer, image_transform, cfg.seed, cfg.run_name)
    model = builders.build_composer_model(flamingo, cfg.train_data, train_spec, cfg.model)
    fsdp = cfg.parallelism_config.fsdp if cfg.parallelism_config else None
    evaluators = None
    if cfg.eval_data is not None:
        evaluators = builders.build_evaluators(cfg.eval_data, tokenizer, image_transform, cfg.seed, cfg.run_name)

    return Trainer(
        run_name=cfg.run_name,
        model=model,
        train_dataloader=train_spec,
        eval_dataloader=evaluators,
        eval_interval=cfg.eval_interval if evaluators else 1,  # Composer warns about an unused interval
        eval_subset_num_batches=cfg.eval_subset_num_batches,
        max_duration=cfg.max_duration,
        optimizers=builders.build_optimizer(model, cfg.optimizer, on_gpu),
        schedulers=builders.build_scheduler(cfg.scheduler),
        step_schedulers_every_batch=True,
        algorithms=builders.build_algorithms(cfg),
        callbacks=builders.build_callbacks(cfg.callbacks, tokenizer, image_transform, on_gpu, cfg.log_to_console,
                                           train_spec),
        loggers=builders.build_loggers(cfg.loggers, cfg.run_name, raw_config),
        device=device,
        precision=cfg.precision,
        device_train_microbatch_size=cfg.device_train_microbatch_size,
        parallelism_config=None if fsdp is None else {"fsdp": vars(fsdp).copy()},
        seed=cfg.seed,
        dist_timeout=cfg.dist_timeout,
        save_folder=cfg.save_folder,
        save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
        # Checkpoints newer than `latest` are leftovers of the interrupted attempt; let them be replaced.
        save_overwrite=cfg.save_overwrite or cfg.autoresume,
        autoresume=cfg.autoresume,
        load_path=cfg.load_path,
        load_weights_only=cfg.load_weights_only,
        log_to_console=cfg.log_to_console,
        console_log_interval=cfg.console_log_interval,
        progress_bar=cfg.progress_bar,
    )


def main(raw_config: dict):
    """Build the trainer, train to `max_duration`, return the trainer."""
    trainer = build_trainer(raw_config)
    trainer.fit()
    return trainer


def cli(argv: list[str]) -> int:
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
    except CheckpointNotFound as e:  # a released checkpoint named by Hub id that cannot be fetched
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
