"""The llm-foundry / Composer keys of the config layer in real (CPU, demo) runs: durations in samples,
eval_first, save_weights_only, python_log_level."""

import json
import logging

import torch

from recipe.config import load_config
from recipe.train import main
from tests.train.conftest import DEMO_YAML


def test_sample_durations_eval_first_and_weights_only_checkpoints(overrides, tmp_path):
    # The demo step holds 16 + 8 samples: 48sp = 2 steps; warmup and saving counted in samples too.
    args = [a for a in overrides("max_duration=48sp", "scheduler.t_warmup=24sp", "save_interval=48sp",
                                 "save_weights_only=true", "eval_first=true", "eval_interval=1000sp",
                                 "eval_subset_num_batches=1", "eval_data.num_workers=0",
                                 "python_log_level=info", "global_train_batch_size=24", run_name="keys")
            if a != "eval_data=null"]
    trainer = main(load_config(DEMO_YAML, args))
    assert int(trainer.state.timestamp.batch) == 2 and int(trainer.state.timestamp.sample) == 48
    trainer.close()
    assert logging.getLogger("composer").level == logging.INFO
    for name in ("composer", "recipe"):  # leave later tests the default levels
        logging.getLogger(name).setLevel(logging.NOTSET)
    records = [json.loads(line) for line in open(tmp_path / "keys" / "metrics.jsonl")]
    evals = [r for r in records if any(k.startswith("metrics/eval_laion/") for k in r)]
    assert evals and evals[0]["step"] == 0  # before the first step
    state = torch.load(tmp_path / "keys" / "ckpt" / "ep0-ba2-rank0.pt", map_location="cpu", weights_only=False)
    assert "model" in state["state"] and "optimizers" not in state["state"]


def test_resolved_config_reaches_every_logger_and_a_yaml_file(overrides, tmp_path):
    import yaml
    from composer.loggers import InMemoryLogger

    secret = "NOT-TO-BE-LOGGED-5678"
    trainer = main(load_config(DEMO_YAML, overrides("max_duration=1ba", "loggers.in_memory_logger={}",
                                                    f"variables.api_token={secret}", run_name="cfg")))
    trainer.close()
    (memory,) = [d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger)]
    written = yaml.safe_load(open(tmp_path / "cfg" / "resolved_config.yaml"))  # beside metrics.jsonl
    for config in (memory.hyperparameters, written):
        assert config["variables"]["api_token"] == "***"
        # defaults filled in, `auto` settings as chosen
        assert config["load_weights_only"] is True and config["model"]["compile_blocks"] is False
        assert config["callbacks"]["speed_monitor"] == {"window_size": 10}
    assert secret not in open(tmp_path / "cfg" / "resolved_config.yaml").read()
