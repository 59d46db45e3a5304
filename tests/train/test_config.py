"""Config validation: typed schema, cross-key rules, one-line errors (in-process and from the CLI)."""

import subprocess

import pytest

from recipe.config import ConfigError, load_config, redact, validate
from tests.train.conftest import DEMO_YAML, PYTHON, REPO, run_train


def _raw(overrides, *extra):
    return load_config(DEMO_YAML, overrides(*extra))


def test_demo_config_is_valid(overrides):
    cfg = validate(_raw(overrides))
    assert cfg.train_data.sources["laion"].batch_size == 16
    assert cfg.train_data.sources["mmc4"].loss_multiplier == 1.0
    assert cfg.train_data.sources["laion"].loss_multiplier == 0.2
    assert cfg.optimizer.betas == [0.9, 0.999]


@pytest.mark.parametrize("extra, message", [
    ("max_duraton=10ba", "unknown key 'max_duraton' (did you mean 'max_duration'?)"),
    ("optimizer.weight_decy=0.1", "did you mean 'optimizer.weight_decay'?"),
    ("train_data.sources.mmc4.max_imgs=2", "did you mean 'train_data.sources.mmc4.max_images'?"),
    ("optimizer.lr=fast", "optimizer.lr: expected a number, got str 'fast'"),
    ("device_train_microbatch_size=1.5", "device_train_microbatch_size: expected an integer"),
    ("scheduler.name=cosine", "did you mean 'cosine_with_warmup'?"),
    ("device_train_microbatch_size=5", "must divide the largest per-device source batch"),
    ("callbacks.scheduled_gc.interval=0", "callbacks.scheduled_gc: need interval >= 1"),
    ("train_data.sources.mmc4.batch_size=5 device_train_microbatch_size=8",
     "mmc4.batch_size=5 does not split into the 2 microbatches"),
    ("model.lm_path=/no/such/lm", "model.lm_path: local model folder does not exist: /no/such/lm"),
    ("train_data.sources.laion.streams.main.remote=/no/such/mds", "MDS folder does not exist"),
    ("max_duration=1ep", "max_duration: use ba, sp, tok units (an epoch of streaming data is all of it)"),
    ("console_log_interval=96sp", "console_log_interval: use ba units (Composer's console logger counts batches"),
    ("scheduler.t_warmup=240sp", "scheduler.t_warmup: Composer's warmup schedulers need the unit of max_duration (ba)"),
    ("fsdp_config.sharding_strategy=FULL_SHARD", "fsdp_config: use parallelism_config.fsdp instead"),
    ("device_eval_batch_size=8", "device_eval_batch_size: use eval_data.sources.<name>.batch_size (per device)"),
    ("device_train_microbatch_size=auto", "device_train_microbatch_size: 'auto' does not apply to per-source batches"),
    ("global_train_batch_size=32", "global_train_batch_size=32: the per-device source batches give 16 + 8 x 1 "
                                   "process(es) = 24; set train_data.sources.<name>.batch_size (per device) instead"),
    ("save_weights_only=true autoresume=true", "save_weights_only: autoresume needs full checkpoints"),
    ("eval_first=true", "eval_first: needs eval_data"),
    ("python_log_level=verbose", "python_log_level: expected one of debug, info, warning, error, critical"),
    ("precision=amp_bf16", "CPU training supports only fp32"),
    ("autoresume=true save_folder=null", "autoresume: needs save_folder"),
    ("parallelism_config.fsdp.sharding_strategy=FULL_SHARD", "FSDP needs CUDA"),
    ("train_data.sources.mmc4.sim_threshold=30", "train_data.sources.mmc4: sim_threshold is a CLIP cosine similarity"),
    ("train_data.sources.mmc4.min_images=4", "need 1 <= min_images <= max_images, got min_images=4, max_images=3"),
    ("train_data.sources.mmc4.max_images=0", "need 1 <= min_images <= max_images"),
    ("train_data.sources.mmc4.single_image_drop_prob=1.5", "single_image_drop_prob must be in [0, 1]"),
    ("train_data.sources.laion.max_tokens=2", "train_data.sources.laion: max_tokens must be >= 4"),
    ("train_data.sources.mmc4.assignment=greedy", "unknown assignment 'greedy'"),
    ("train_data.sources.laion.epoch_size=0", "epoch_size must be >= 1"),
    ("train_data.sources.laion.streams.main.proportion=0", "streams.main.proportion must be > 0"),
    ("model.trainable.perceiver=false model.trainable.cross_attn=false model.trainable.new_embeddings=false",
     "model.trainable: nothing would train"),
    ("model.trainable.lm_last_n_layers=-2", "lm_last_n_layers must be >= 0, or -1 for all"),
    ("model.trainable.lm_layers=2", "unknown key 'model.trainable.lm_layers' (did you mean"),
    ("model.freeze_new_embeddings=true", "unknown key 'model.freeze_new_embeddings'"),
    ("model.cuda_graphs=true activation_checkpointing=true",
     "model.cuda_graphs: needs model.compile_blocks=true, a GPU, no activation checkpointing"),
    ("model.cuda_graphs=true model.compile_blocks=true device_train_microbatch_size=4",
     "model.cuda_graphs: needs one microbatch per step"),
])
def test_bad_configs_are_one_clear_error(overrides, extra, message):
    with pytest.raises(ConfigError) as e:
        validate(_raw(overrides, *extra.split()))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("extra, message", [
    ("eval_data.prefetch_factor=4", "eval_data.prefetch_factor: not used for evaluation"),
    ("eval_data.microbatches=mixed", "eval_data.microbatches: not used for evaluation"),
    ("eval_data.clean_stale_shm=false", "eval_data.clean_stale_shm: not used for evaluation"),
    ("eval_data.sources.laion.shuffle=true", "eval_data.sources.laion.shuffle: not used for evaluation"),
    ("eval_data.sources.laion.shuffle_seed=1", "eval_data.sources.laion.shuffle_seed: not used for evaluation"),
    ("eval_data.sources.mmc4.shuffle_block_size=8", "eval_data.sources.mmc4.shuffle_block_size: not used"),
    ("eval_data.sources.mmc4.epoch_size=100", "eval_data.sources.mmc4.epoch_size: not used for evaluation"),
    ("eval_data.sources.mmc4.loss_multiplier=2", "eval_data.sources.mmc4.loss_multiplier: not used for evaluation"),
])
def test_eval_keys_without_effect_are_errors(demo_assets, tmp_path, extra, message):
    """Keys evaluation would ignore (training-only settings) stop the run, naming the key."""
    raw = load_config(DEMO_YAML, [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}",
                                  f"save_folder={tmp_path}/ckpt", "callbacks.captions=null", extra])
    with pytest.raises(ConfigError) as e:
        validate(raw)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_demo_eval_data_is_valid(demo_assets, tmp_path):
    raw = load_config(DEMO_YAML, [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}",
                                  f"save_folder={tmp_path}/ckpt", "callbacks.captions=null"])
    cfg = validate(raw)
    assert set(cfg.eval_data.sources) == {"laion", "mmc4"} and cfg.eval_data.num_workers == 0


def test_llm_foundry_keys_and_durations_in_samples_and_tokens(overrides, monkeypatch):
    cfg = validate(_raw(overrides, "max_duration=4800sp", "scheduler.t_warmup=240sp", "save_interval=1000tok",
                        "eval_interval=96sp", "global_train_batch_size=24", "python_log_level=DEBUG",
                        "save_weights_only=true"))
    assert (cfg.max_duration, cfg.global_train_batch_size, cfg.save_weights_only) == ("4800sp", 24, True)
    cfg = validate(_raw(overrides, "max_duration=1000000tok", "scheduler.t_warmup=1000tok"))
    assert cfg.scheduler.t_warmup == "1000tok"
    monkeypatch.setenv("WORLD_SIZE", "8")  # the global batch counts every process
    assert validate(_raw(overrides, "global_train_batch_size=192")).global_train_batch_size == 192


@pytest.mark.parametrize("extra, message", [
    ("callbacks.speed_monitor.window=5",
     "unknown key 'callbacks.speed_monitor.window' (did you mean 'callbacks.speed_monitor.window_size'?)"),
    ("callbacks.speed_monitor.window_size=fast", "callbacks.speed_monitor.window_size: expected an integer"),
    ("callbacks.lr_monitr={}", "callbacks.lr_monitr: unknown callback (did you mean 'callbacks.lr_monitor'?)"),
    ("callbacks.nan_monitor.every=2", "unknown key 'callbacks.nan_monitor.every' (NaNMonitor takes no arguments)"),
    ("callbacks.early_stopper={}", "missing required key 'callbacks.early_stopper.monitor'"),
    ("callbacks.checkpoint_saver={}", "callbacks.checkpoint_saver: set save_folder / save_interval instead"),
    ("callbacks.lr_monitor=5", "callbacks.lr_monitor: expected a mapping of its arguments (or true / null), got int 5"),
    ("callbacks.scheduled_gc.interval=fast", "callbacks.scheduled_gc.interval: expected an integer"),
    ("loggers.mlflow={}", "loggers.mlflow: needs the mlflow package (pip install mlflow)"),
    ("loggers.wandb.mode=on", "loggers.wandb.mode: expected one of 'online' | 'offline' | 'disabled'"),
    ("loggers.wandb.projetc=x", "unknown key 'loggers.wandb.projetc' (did you mean 'loggers.wandb.project'?)"),
    ("loggers.console={}", "loggers.console: set log_to_console / console_log_interval instead"),
])
def test_callbacks_and_loggers_are_checked_against_their_classes(overrides, extra, message):
    with pytest.raises(ConfigError) as e:
        validate(_raw(overrides, extra))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_every_registered_name_resolves_to_a_class():
    """Catches a registry entry left naming a module that moved."""
    from recipe import registry

    import typing

    for name, target in {**registry.CALLBACKS, **registry.LOGGERS}.items():
        cls = registry.resolve(target)
        assert isinstance(cls, type), name
        typing.get_type_hints(cls.__init__)  # what validation reads for Composer's classes
    assert not set(registry.ELSEWHERE) & (set(registry.CALLBACKS) | set(registry.LOGGERS))


def test_callbacks_and_loggers_by_composer_names(overrides, tmp_path):
    """llm-foundry's sections work as written; `true` / null / false still switch one on or off."""
    from types import SimpleNamespace

    from composer.callbacks import LRMonitor, OptimizerMonitor, RuntimeEstimator, SpeedMonitor
    from composer.loggers import FileLogger, InMemoryLogger, WandBLogger

    from recipe import trainer_parts

    cfg = validate(_raw(overrides, "callbacks={lr_monitor: {}, speed_monitor: {window_size: 7}, memory_monitor: {}, "
                                   "runtime_estimator: true, optimizer_monitor: {batch_log_interval: 5}, "
                                   "nan_monitor: null, free_outputs: false}",
                        f"loggers={{wandb: {{project: p, mode: offline, dir: {tmp_path}/wb}}, in_memory_logger: {{}}, "
                        f"file: {{filename: {tmp_path}/log.txt}}, jsonl: {{path: {tmp_path}/m.jsonl}}}}"))
    # merged into the demo YAML's section (whose captions the fixture turned off)
    assert set(cfg.callbacks) == {"lr_monitor", "speed_monitor", "memory_monitor", "runtime_estimator",
                                  "optimizer_monitor"}
    spec = SimpleNamespace(dataloader=SimpleNamespace(dataset=SimpleNamespace(rejection_reasons={})))
    built = trainer_parts.build_callbacks(cfg.callbacks, None, None, on_gpu=False, console=False, train_spec=spec)
    by_type = {type(c): c for c in built[1:]}  # memory_monitor: not on CPU
    assert set(by_type) == {LRMonitor, SpeedMonitor, RuntimeEstimator, OptimizerMonitor}
    assert by_type[SpeedMonitor].history_wct.maxlen == 7 + 1 and by_type[OptimizerMonitor].batch_log_interval == 5
    loggers = trainer_parts.build_loggers(cfg.loggers, "t")
    by_name = {type(x).__name__: x for x in loggers}
    assert set(by_name) == {"WandBLogger", "InMemoryLogger", "FileLogger", "JSONLLogger"} and len(loggers) == 4
    wandb_logger = by_name["WandBLogger"]
    assert isinstance(wandb_logger, WandBLogger) and isinstance(by_name["InMemoryLogger"], InMemoryLogger)
    assert isinstance(by_name["FileLogger"], FileLogger) and by_name["JSONLLogger"].path == f"{tmp_path}/m.jsonl"
    assert wandb_logger._init_kwargs["mode"] == "offline" and wandb_logger._init_kwargs["project"] == "p"
    assert validate(_raw(overrides, "loggers.wandb.mode=disabled")).loggers["wandb"] == {"mode": "disabled"}


def test_device_train_microbatch_size_splitting_rule(overrides):
    # 16 and 8 split into 2 microbatches of (8, 4) samples: fine.
    cfg = validate(_raw(overrides, "device_train_microbatch_size=8"))
    assert cfg.device_train_microbatch_size == 8 and cfg.train_data.microbatches == "mixed"  # auto without FSDP
    # One source per microbatch: any size works (16 -> 3 microbatches of 6/5/5, 8 -> 2 of 4).
    cfg = validate(_raw(overrides, "device_train_microbatch_size=6", "train_data.microbatches=per_source"))
    assert cfg.train_data.microbatches == "per_source"


def test_secrets_are_redacted():
    cfg = {"loggers": {"wandb": {"api_key": "abc"}}, "variables": {"aws_secret_access_key": "x", "token": "t"},
           "model": {"tokenizer_path": "keep", "max_new_tokens": 3}}
    out = redact(cfg)
    assert out["loggers"]["wandb"]["api_key"] == "***"
    assert out["variables"] == {"aws_secret_access_key": "***", "token": "***"}
    assert out["model"] == {"tokenizer_path": "keep", "max_new_tokens": 3}


@pytest.mark.parametrize("extra, message", [
    (["max_duraton=10ba"], "config error: unknown key 'max_duraton' (did you mean 'max_duration'?)"),
    (["train_data.sources.laion.batch_size=fifteen"], "train_data.sources.laion.batch_size: expected an integer"),
    (["model.tokenizer_path=/missing/tok"], "model.tokenizer_path: local model folder does not exist"),
    (["device_train_microbatch_size=auto"], "config error: device_train_microbatch_size: 'auto' does not apply"),
    (["fsdp_config.sharding_strategy=FULL_SHARD"], "config error: fsdp_config: use parallelism_config.fsdp instead"),
])
def test_cli_prints_one_line_and_fails(overrides, extra, message):
    proc = run_train(overrides(*extra))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_missing_yaml_is_one_line():
    proc = subprocess.run([PYTHON, "recipe/train.py", "yamls/nope.yaml"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: config file not found: yamls/nope.yaml"


@pytest.mark.parametrize("name", ["flamingo-3b", "flamingo-4b", "flamingo-9b"])
def test_release_yamls_validate(name, demo_assets):
    """The GPU recipes pass the schema (on a CPU machine: device forced to gpu; data = the demo MDS)."""
    raw = load_config(f"{REPO}/yamls/{name}.yaml", [f"variables.data={demo_assets['out']}/mds", "device=gpu"])
    cfg = validate(raw)
    sources = cfg.train_data.sources
    assert (sources["laion"].batch_size, sources["mmc4"].batch_size) == (64, 32)
    assert (sources["laion"].loss_multiplier, sources["mmc4"].loss_multiplier) == (0.2, 1.0)
    assert cfg.scheduler.t_warmup == "1875ba" and cfg.optimizer.lr == 1e-4 and cfg.autoresume
    # 60M MMC4 samples at 32 per GPU on 8 GPUs
    assert int(cfg.max_duration.removesuffix("ba")) * 32 * 8 == 60_000_000


@pytest.mark.parametrize("name, world, extra, chosen", [
    # one GPU: the measured fast path (docs/PERFORMANCE.md)
    ("flamingo-3b", 1, [], {"model.frozen_dtype": "bf16", "model.compile_blocks": True, "model.cuda_graphs": True}),
    # several GPUs (DDP): CUDA graphs stay off
    ("flamingo-3b", 8, [], {"model.frozen_dtype": "bf16", "model.compile_blocks": True, "model.cuda_graphs": False}),
    # FSDP (the README's override example): eager blocks, per-source microbatches
    ("flamingo-3b", 8, ["parallelism_config.fsdp.sharding_strategy=FULL_SHARD"],
     {"model.frozen_dtype": "bf16", "model.compile_blocks": False, "model.cuda_graphs": False}),
    # 9B: activation checkpointing rules out graphs
    ("flamingo-9b", 1, [], {"model.frozen_dtype": "bf16", "model.compile_blocks": True, "model.cuda_graphs": False}),
    # the 9B YAML's FSDP example for 40 GB GPUs
    ("flamingo-9b", 8, ["parallelism_config.fsdp={sharding_strategy: FULL_SHARD, activation_checkpointing: true, "
                        "state_dict_type: sharded}", "activation_checkpointing=false"],
     {"model.frozen_dtype": "bf16", "model.compile_blocks": False, "model.cuda_graphs": False}),
    ("flamingo-4b", 8, [], {"model.frozen_dtype": "bf16", "model.compile_blocks": False, "model.cuda_graphs": False}),
    # an explicit value is kept and not reported
    ("flamingo-3b", 1, ["model.compile_blocks=false"], {"model.frozen_dtype": "bf16", "model.cuda_graphs": False}),
])
def test_release_yamls_choose_the_fast_settings(name, world, extra, chosen, demo_assets, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    raw = load_config(f"{REPO}/yamls/{name}.yaml", [f"variables.data={demo_assets['out']}/mds", "device=gpu", *extra])
    cfg = validate(raw)
    assert cfg.auto_choices == chosen
    assert all(getattr(cfg.model, key.removeprefix("model.")) == value for key, value in chosen.items())


def test_auto_settings_on_cpu_are_the_safe_ones(overrides):
    cfg = validate(_raw(overrides))  # the demo YAML leaves them at auto
    assert cfg.auto_choices == {"model.frozen_dtype": "fp32", "model.compile_blocks": False,
                                "model.cuda_graphs": False}
