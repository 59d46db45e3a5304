"""On a GPU: an FSDP run's sharded checkpoints (a folder of shards per step) carry one manifest covering every
shard; a damaged shard sets the whole checkpoint aside and the run resumes from the one before, to the same
losses. Skipped without CUDA."""

import os

import pytest
import torch

from recipe.callbacks.jsonl_logger import read_metrics
from tests.train.conftest import run_train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs a CUDA GPU")

GPU_FSDP = ["device=gpu", "precision=amp_bf16", "parallelism_config.fsdp.sharding_strategy=FULL_SHARD",
            "parallelism_config.fsdp.state_dict_type=sharded", "save_interval=2ba", "autoresume=true",
            "save_num_checkpoints_to_keep=-1"]


def test_sharded_checkpoints_are_verified_as_a_whole(overrides, tmp_path):
    straight = run_train(overrides(*GPU_FSDP, "max_duration=6ba", run_name="straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    args = overrides(*GPU_FSDP, run_name="sharded")
    first = run_train(args + ["max_duration=4ba"])
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tmp_path / "sharded" / "ckpt"
    import json
    manifest = json.loads((ckpt / "ep0-ba4.manifest.json").read_text())
    assert sorted(manifest["files"]) == ["ep0-ba4/.metadata", "ep0-ba4/__0_0.distcp"]
    shard = ckpt / "ep0-ba4" / "__0_0.distcp"
    with open(shard, "r+b") as f:
        f.seek(os.path.getsize(shard) // 2)
        f.write(b"\xff" * 4096)
    resumed = run_train(args + ["max_duration=6ba"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint ep0-ba4: ep0-ba4/__0_0.distcp fails its SHA-256 check" in resumed.stderr
    assert "resuming from checkpoint ep0-ba2 (verified against its manifest)" in resumed.stderr
    assert (ckpt / "rejected" / "ep0-ba4" / "__0_0.distcp").exists()
    loss = "loss/train/total"
    assert read_metrics(str(tmp_path / "sharded" / "metrics.jsonl"), loss) == \
        read_metrics(str(tmp_path / "straight" / "metrics.jsonl"), loss)
