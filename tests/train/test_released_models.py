"""The README's three paths with the LM the release YAMLs name, on our MosaicGPT stand-in (a local
`trust_remote_code` folder with its traits, tests/stand_ins): train yamls/flamingo-3b.yaml from scratch,
export the run (`python -m recipe.export`, from a checkpoint file and from a sharded folder) as an
OpenFlamingo checkpoint.pt and as a Hugging Face folder, and fine-tune with yamls/finetune-3b.yaml from a
released checkpoint named by its Hub repo id (an offline Hugging Face cache)."""

import os
import subprocess

import pytest
import stand_ins
import torch

from recipe.config import load_config
from recipe.callbacks.jsonl_logger import read_metrics
from recipe.model import load_openflamingo_checkpoint
from recipe.pretrained import from_pretrained
from recipe.train import main
from tests.train.conftest import PYTHON, REPO
from tests.train.shard_writer import write_sharded
from tests.train.test_train import LOSS

FLAMINGO_3B = os.path.join(REPO, "yamls", "flamingo-3b.yaml")
FINETUNE_3B = os.path.join(REPO, "yamls", "finetune-3b.yaml")
HUB_ID = "openflamingo/OpenFlamingo-3B-vitl-mpt1b"


@pytest.fixture(scope="module")
def tiny_3b(demo_assets, tmp_path_factory):
    """Overrides that shrink yamls/flamingo-3b.yaml onto the demo corpus and the MosaicGPT stand-in."""
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(demo_assets["tokenizer"]))
    lm = stand_ins.write_remote_lm("mosaic_gpt", str(tmp_path_factory.mktemp("hub") / "anas-awadalla"), vocab + 16)
    return [f"model.vision_name={demo_assets['vision']}", "model.vision_pretrained=null", f"model.lm_path={lm}",
            f"model.tokenizer_path={demo_assets['tokenizer']}",
            "model.perceiver={depth: 2, heads: 4, dim_head: 16, num_latents: 8}", "model.cross_attn={heads: 4, dim_head: 16}",
            "device=cpu", "precision=fp32", "train_data.num_workers=0", "device_train_microbatch_size=8",
            "scheduler.t_warmup=2ba", "optimizer.lr=1.0e-3", "console_log_interval=1ba", "save_interval=2ba",
            "callbacks.memory_monitor=false", "loggers.wandb=null"]


@pytest.fixture(scope="module")
def trained_3b(demo_assets, tiny_3b, tmp_path_factory):
    """Path 1: `composer recipe/train.py yamls/flamingo-3b.yaml` (here in-process, 2 steps)."""
    root = tmp_path_factory.mktemp("of3b")
    args = [*tiny_3b, f"variables.data={demo_assets['out']}/mds", f"variables.run_root={root}",
            "train_data.sources.laion.batch_size=8", "train_data.sources.mmc4.batch_size=4",
            "train_data.sources.mmc4.max_tokens=48", "train_data.sources.mmc4.min_image_bytes=0",
            f"loggers.jsonl.path={root}/metrics.jsonl", "max_duration=2ba"]
    trainer = main(load_config(FLAMINGO_3B, args))
    trainer.close()
    losses = read_metrics(str(root / "metrics.jsonl"), LOSS)
    assert sorted(losses) == [0, 1] and all(0 < v < 100 for v in losses.values())
    model = trainer.state.model.model.eval()
    assert type(model.lang_encoder).__name__ == "MosaicGPT" and model.lm_layout.head is None
    return model, str(root / "openflamingo-3b" / "checkpoints" / "latest-rank0.pt")


def _logits(model, tok_ids):
    size = model.vision_encoder.visual.image_size
    images = torch.randn(1, 2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(images, tok_ids, num_images=torch.tensor([2])).logits


def _ids(model):
    # <image> a b <|endofchunk|> <image> c : ids below the base vocabulary plus the added tokens
    return torch.tensor([[model.media_token_id, 5, 9, model.eoc_token_id, model.media_token_id, 7]])


def _export(*args):
    proc = subprocess.run([PYTHON, "-m", "recipe.export", *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_export_help_and_errors():
    proc = subprocess.run([PYTHON, "-m", "recipe.export", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "--out" in proc.stdout and "--hf" in proc.stdout
    proc = subprocess.run([PYTHON, "-m", "recipe.export", "nope.pt", "--out", "x.pt"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("no such checkpoint: nope.pt")


def test_export_file_and_sharded_folder_round_trip(trained_3b, tmp_path):
    """Path 3: export as checkpoint.pt and as a Hugging Face folder; both give back the trained model."""
    model, checkpoint = trained_3b
    want = _logits(model, _ids(model))
    _export(checkpoint, "--out", str(tmp_path / "checkpoint.pt"), "--hf", str(tmp_path / "hf"))

    restored, tokenizer, _ = from_pretrained(str(tmp_path / "hf"))
    assert torch.equal(_logits(restored.eval(), _ids(restored)), want)
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]

    # checkpoint.pt strictly into the model the YAML builds (its LM and vision weights are the run's).
    fresh, _ = from_pretrained(str(tmp_path / "hf"))[:2]
    with torch.no_grad():
        for p in fresh.parameters():
            if p.requires_grad:
                p.zero_()
    report = load_openflamingo_checkpoint(fresh, str(tmp_path / "checkpoint.pt"))
    assert not report.missing_keys and not report.defaulted_keys
    assert torch.equal(_logits(fresh.eval(), _ids(fresh)), want)

    # The same run as a sharded checkpoint folder (2 ranks, FSDP2 shards) exports the same tensors.
    folder = write_sharded(checkpoint, str(tmp_path / "sharded"))
    assert sorted(f for f in os.listdir(folder) if f.endswith(".distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    _export(folder, "--out", str(tmp_path / "from-sharded.pt"))
    a, b = torch.load(tmp_path / "checkpoint.pt"), torch.load(tmp_path / "from-sharded.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _hub_cache(root, checkpoint_pt: str) -> str:
    """An offline Hugging Face cache holding `HUB_ID`'s checkpoint.pt, as `huggingface-cli download` leaves it."""
    commit = "0" * 40
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    os.link(checkpoint_pt, repo / "snapshots" / commit / "checkpoint.pt")
    return str(root)


def test_finetune_a_released_model_by_hub_id(trained_3b, tiny_3b, demo_assets, tmp_path, monkeypatch):
    """Path 2: yamls/finetune-3b.yaml with `variables.checkpoint=<Hub repo id>`, read from the HF cache."""
    from huggingface_hub import constants

    from convert.jsonl_to_mds import convert_jsonl
    from tests.train.test_finetune import _write_jsonl

    model, checkpoint = trained_3b
    _export(checkpoint, "--out", str(tmp_path / "released.pt"))
    cache = _hub_cache(tmp_path / "hf-cache", str(tmp_path / "released.pt"))
    data = tmp_path / "mine"
    pairs, docs = _write_jsonl(str(tmp_path / "raw"), 16, 8, 0)
    for kind, src in (("pairs", pairs), ("interleaved", docs)):
        out = "pairs" if kind == "pairs" else "docs"
        for split in ("", "heldout-"):
            convert_jsonl([src], str(data / f"{split}{out}"), kind=kind, workers=1, progress_bar=False)
    args = [*tiny_3b, f"variables.data={data}", f"variables.run_root={tmp_path}", f"variables.checkpoint={HUB_ID}",
            "train_data.sources.pairs.batch_size=8", "train_data.sources.docs.batch_size=4",
            "train_data.sources.docs.max_tokens=64", "eval_data.sources.docs.max_tokens=64",
            "eval_data.num_workers=0", "eval_interval=2ba", "device_train_microbatch_size=4",
            f"loggers.jsonl.path={tmp_path}/ft.jsonl", "max_duration=2ba"]

    # Offline and not cached: one line that says what to do.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    proc = subprocess.run([PYTHON, "recipe/train.py", FINETUNE_3B, *args], cwd=REPO, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: model.openflamingo_checkpoint: cannot get checkpoint.pt of {HUB_ID} from the Hugging Face Hub "
        "(offline, and it is not in the cache)")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    trainer = main(load_config(FINETUNE_3B, args))
    trainer.close()
    tuned = trainer.state.model.model
    # Started from the released weights (this YAML's seed would draw other latents): the first step has LR 0
    # (warmup), the second moves each weight by about the LR at most.
    assert torch.allclose(tuned.perceiver.latents, model.perceiver.latents, atol=2e-3)
    assert sorted(read_metrics(str(tmp_path / "ft.jsonl"), LOSS)) == [0, 1]
