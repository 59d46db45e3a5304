"""yamls/finetune-3b.yaml on tiny offline assets: own data (jsonl -> convert/jsonl_to_mds.py -> MDS, pairs and
interleaved sources mixed, held-out evaluation), started from an OpenFlamingo checkpoint.pt exported from our
model, with the LM's last 2 layers unfrozen; trains, saves, resumes and continues to identical losses."""

import json
import os

import numpy as np
import pytest
import torch

from recipe import trainer_parts
from recipe.config import load_config, validate
from recipe.offline.shapes import caption, draw, random_scene
from recipe.callbacks.jsonl_logger import read_metrics
from recipe.model import export_openflamingo_checkpoint
from recipe.train import main
from tests.train.conftest import REPO
from tests.train.test_train import LOSS

FINETUNE_YAML = os.path.join(REPO, "yamls", "finetune-3b.yaml")


def _write_jsonl(folder, n_pairs: int, n_docs: int, seed: int) -> tuple[str, str]:
    """Own data as a user would write it: image files plus one JSON object per line."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)

    def image() -> tuple[str, str]:
        scene = random_scene(rng)
        name = f"img/{len(os.listdir(os.path.join(folder, 'img')))}.png"
        draw(*scene, rng).save(os.path.join(folder, name))
        return name, caption(*scene)

    with open(os.path.join(folder, "pairs.jsonl"), "w") as f:
        for _ in range(n_pairs):
            name, text = image()
            f.write(json.dumps({"image": name, "caption": text}) + "\n")
    with open(os.path.join(folder, "docs.jsonl"), "w") as f:
        for i in range(n_docs):
            shown = [image() for _ in range(1 + i % 3)]
            text = "Look. " + " ".join(f"<image>Here is {t}." for _, t in shown)
            f.write(json.dumps({"text": text, "images": [n for n, _ in shown]}) + "\n")
    return os.path.join(folder, "pairs.jsonl"), os.path.join(folder, "docs.jsonl")


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    from convert.jsonl_to_mds import convert_jsonl

    root = str(tmp_path_factory.mktemp("own"))
    quiet = dict(workers=1, progress_bar=False)
    for split, n_pairs, n_docs, seed in (("", 64, 32, 0), ("heldout-", 8, 4, 1)):
        pairs, docs = _write_jsonl(os.path.join(root, f"{split}raw"), n_pairs, n_docs, seed)
        assert convert_jsonl([pairs], os.path.join(root, f"{split}pairs"), kind="pairs", **quiet)[
            "samples_written"] == n_pairs
        assert convert_jsonl([docs], os.path.join(root, f"{split}docs"), kind="interleaved", **quiet)[
            "samples_written"] == n_docs
    return root


@pytest.fixture
def finetune(demo_assets, own_data, tmp_path):
    """`finetune(*extra, run_name=...)` -> dotlist for yamls/finetune-3b.yaml on the tiny assets."""
    def make(*extra: str, run_name: str = "ft") -> list[str]:
        return [f"variables.data={own_data}", f"variables.run_root={tmp_path}", f"run_name={run_name}",
                f"model.vision_name={demo_assets['vision']}", "model.vision_pretrained=null",
                f"model.lm_path={demo_assets['lm']}", f"model.tokenizer_path={demo_assets['tokenizer']}",
                "model.trust_remote_code=false",
                "model.perceiver={depth: 2, heads: 4, dim_head: 16, num_latents: 8}",
                "model.cross_attn={heads: 4, dim_head: 16}",
                "device=cpu", "precision=fp32", "train_data.num_workers=0", "eval_data.num_workers=0",
                "train_data.sources.pairs.batch_size=8", "train_data.sources.docs.batch_size=4",
                "train_data.sources.docs.max_tokens=64", "eval_data.sources.docs.max_tokens=64",
                "eval_data.sources.pairs.batch_size=8", "eval_data.sources.docs.batch_size=4",
                "device_train_microbatch_size=4", "eval_interval=2ba", "save_interval=2ba",
                "scheduler.t_warmup=2ba", "optimizer.lr=1.0e-3", "console_log_interval=1ba",
                "callbacks.memory_monitor=false", "loggers.wandb=null",
                f"loggers.jsonl.path={tmp_path}/{run_name}/metrics.jsonl", *extra]
    return make


def test_finetune_from_exported_checkpoint_trains_saves_and_resumes(finetune, tmp_path, capfd):
    # A checkpoint.pt in the reference layout, written from our own model with non-trivial trainable weights.
    cfg = validate(load_config(FINETUNE_YAML, finetune("model.openflamingo_checkpoint=null")))
    assert cfg.model.trainable.lm_last_n_layers == 2 and cfg.optimizer.weight_decay_backbone == 0.01
    torch.manual_seed(0)
    source, _, _ = trainer_parts.build_flamingo_model(cfg.model)
    with torch.no_grad():
        for block in source.cross_attn_blocks:
            block.attn_gate.fill_(0.5)
            block.ff_gate.fill_(0.5)
    checkpoint = str(tmp_path / "checkpoint.pt")
    torch.save(export_openflamingo_checkpoint(source), checkpoint)

    straight = main(load_config(FINETUNE_YAML, finetune(f"variables.checkpoint={checkpoint}", "max_duration=4ba",
                                                        run_name="straight")))
    trained = straight.state.model.model
    startup = capfd.readouterr().err  # the per-part table of trainable parameters
    assert "trainable parameters per part" in startup
    layer_row = next(line.split() for line in startup.splitlines() if line.startswith("lm_layers"))
    assert int(layer_row[1].replace(",", "")) * 2 == int(layer_row[2].replace(",", ""))  # 2 of 4 layers
    # The checkpoint was loaded (gates start at 0 otherwise), the LM's last 2 layers trained, the rest is frozen.
    gates = torch.stack([b.attn_gate.detach() for b in trained.cross_attn_blocks])
    assert torch.allclose(gates, torch.full_like(gates, 0.5), atol=0.05)
    layers = trained.decoder_layers
    for i, (new, old) in enumerate(zip(layers, source.decoder_layers)):
        same = all(torch.equal(a, b) for a, b in zip(new.parameters(), old.parameters()))
        assert same == (i < len(layers) - 2), i
        assert all(p.requires_grad == (i >= len(layers) - 2) for p in new.parameters())
    straight.close()

    log = str(tmp_path / "straight" / "metrics.jsonl")
    assert sorted(read_metrics(log, LOSS)) == [0, 1, 2, 3]
    assert read_metrics(log, "loss/train/loss_pairs") and read_metrics(log, "loss/train/loss_docs")
    for name in ("pairs", "docs"):  # held-out evaluation per source
        ce = read_metrics(log, f"metrics/eval_{name}/CrossEntropy/{name}")
        assert sorted(ce) == [2, 4] and all(np.isfinite(v) for v in ce.values())

    # The same run interrupted after 2 steps, then resumed (autoresume) to 4: identical per-step losses.
    args = finetune(f"variables.checkpoint={checkpoint}", run_name="resumed")
    main(load_config(FINETUNE_YAML, args + ["max_duration=2ba"])).close()
    assert "latest-rank0.pt" in os.listdir(tmp_path / "resumed" / "checkpoints")
    resumed = main(load_config(FINETUNE_YAML, args + ["max_duration=4ba"]))
    assert int(resumed.state.timestamp.batch) == 4
    resumed.close()
    assert read_metrics(str(tmp_path / "resumed" / "metrics.jsonl"), LOSS) == read_metrics(log, LOSS)
