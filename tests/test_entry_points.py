"""The console scripts of pyproject.toml point at real callables and answer `--help` with exit 0 (called
in-process as the installed wrapper calls them: `sys.exit(func())`), and the folders whose files run as
scripts shadow no other module."""

import importlib.metadata
import os
import sys
import tomllib

import pytest

from cli_runner import REPO, run_jobs

SCRIPTS = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]["scripts"]


def test_console_scripts_are_the_documented_set():
    assert set(SCRIPTS) == {"flamingo-train", "flamingo-eval", "flamingo-export", "flamingo-convert-laion",
                            "flamingo-convert-mmc4", "flamingo-convert-chatgpt", "flamingo-convert-jsonl"}


def test_console_scripts_help_exits_0(tmp_path):
    jobs = [{"kind": "entry", "name": name, "target": target, "argv": ["--help"]} for name, target in SCRIPTS.items()]
    for name, result in zip(SCRIPTS, run_jobs(jobs, str(tmp_path))):
        assert result["code"] == 0, f"{name} --help: exit {result['code']}: {result['output']}"
        assert result["output"].strip(), f"{name} --help printed nothing"


@pytest.mark.parametrize("folder", ["recipe", "convert"])
def test_script_folders_shadow_nothing(folder):
    """`composer recipe/train.py` and `python convert/x.py` put that folder first on sys.path: none of its
    modules may carry the name of a stdlib module or of an installed top-level package."""
    ours = {name for name, dists in importlib.metadata.packages_distributions().items() if "flamingo-recipe" in dists}
    taken = set(sys.stdlib_module_names) | (set(importlib.metadata.packages_distributions()) - ours)
    names = {entry.removesuffix(".py") for entry in os.listdir(os.path.join(REPO, folder))
             if entry.endswith(".py") or os.path.isfile(os.path.join(REPO, folder, entry, "__init__.py"))}
    assert not names & taken, f"{folder}/ shadows {sorted(names & taken)} when its files run as scripts"


def test_runner_imports_this_checkout(tmp_path):
    """The subprocesses above import this checkout's packages, not another installed copy."""
    [result] = run_jobs([{"kind": "exec", "code": "", "report": ["recipe", "convert"]}], str(tmp_path))
    for package in ("recipe", "convert"):
        assert f"{package} {os.path.join(REPO, package, '__init__.py')}" in result["output"], result["output"]
