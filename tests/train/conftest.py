"""A small demo corpus (upstream formats -> convert/ -> MDS) and offline model assets, built once per
session, plus helpers to run recipe/train.py on it in-process or as a subprocess."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_YAML = os.path.join(REPO, "yamls", "demo.yaml")
PYTHON = sys.executable


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory):
    from recipe.demo import prepare

    out = str(tmp_path_factory.mktemp("demo"))
    return prepare(out, laion=256, mmc4_docs=64, heldout=32, teach_steps=0, log=lambda *_: None)


@pytest.fixture
def overrides(demo_assets, tmp_path):
    """`overrides(**extra)` -> dotlist for yamls/demo.yaml on the session corpus, outputs under tmp_path."""
    def make(*extra: str, run_name: str = "t") -> list[str]:
        return [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}",
                f"run_name={run_name}", f"save_folder={tmp_path}/{run_name}/ckpt",
                f"loggers.jsonl.path={tmp_path}/{run_name}/metrics.jsonl",
                "eval_data=null", "callbacks.captions=null", "console_log_interval=1ba",
                "train_data.num_workers=0", *extra]
    return make


def run_train(args: list[str], launcher: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    cmd = (launcher or [PYTHON]) + [os.path.join(REPO, "recipe", "train.py"), DEMO_YAML, *args]
    env = {**kwargs.pop("env", os.environ), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, **kwargs)
