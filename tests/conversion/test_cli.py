import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("script", ["laion_to_mds", "mmc4_to_mds", "chatgpt_to_mds", "jsonl_to_mds"])
def test_scripts_run_as_files(script):
    res = subprocess.run([sys.executable, os.path.join(REPO, "convert", f"{script}.py"), "--help"],
                         capture_output=True, text=True, cwd="/", env={**os.environ, "PYTHONPATH": REPO})
    assert res.returncode == 0, res.stderr
    for flag in ("--input", "--output", "--workers", "--shard-size", "--max-samples"):
        assert flag in res.stdout
