"""`python -m recipe.eval` end to end: a tiny model trained with yamls/demo.yaml, evaluated from its Composer
checkpoint on tiny COCO (Karpathy split file) and VQAv2 (question / annotation files) sets written in their
real formats; scores per task, shots and seed, predictions, determinism, and counted skips of bad examples."""

import json
import os
import subprocess

import numpy as np
import pytest

from recipe.train import main
from recipe.config import load_config
from recipe.offline.eval_sets import Example, write_coco_vqav2
from recipe.offline.shapes import caption, draw, random_scene, to_jpeg
from tests.train.conftest import DEMO_YAML, PYTHON, REPO


def _write_sets(root) -> tuple[dict, list[str]]:
    """COCO Karpathy + VQAv2 files over the same 14 shapes (8 demonstrations, 6 evaluated)."""
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(14):
        colour, shape, side = random_scene(rng)
        examples.append(Example(to_jpeg(draw(colour, shape, side, rng)), [caption(colour, shape, side), f"A {shape}."],
                                "What shape is shown?", [shape] * 9 + [colour]))
    return write_coco_vqav2(str(root), examples, n_train=8)


@pytest.fixture(scope="module")
def trained_checkpoint(demo_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    args = [f"variables.out={demo_assets['out']}", f"model.vision_name={demo_assets['vision']}", "run_name=ev",
            f"save_folder={root}/ckpt", f"loggers.jsonl.path={root}/m.jsonl", "eval_data=null",
            "callbacks.captions=null", "train_data.num_workers=0", "max_duration=2ba", "save_interval=2ba"]
    main(load_config(DEMO_YAML, args)).close()
    return str(root / "ckpt" / "latest-rank0.pt")


def _evaluate(tmp_path, checkpoint, datasets, out, *extra):
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({"checkpoint": checkpoint, "tasks": ["coco", "vqav2"], "datasets": datasets,
                                  "shots": [0, 2], "seeds": [1, 2], "num_samples": 4, "query_set_size": 8,
                                  "batch_size": 2, "precision": "fp32", "device": "cpu", "out_dir": str(out),
                                  "published": "OpenFlamingo-9B"}))
    return subprocess.run([PYTHON, "-m", "recipe.eval", str(config), *extra], cwd=REPO, capture_output=True,
                          text=True)


def test_evaluates_a_trained_checkpoint(trained_checkpoint, tmp_path):
    datasets, paths = _write_sets(tmp_path)
    proc = _evaluate(tmp_path, trained_checkpoint, datasets, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {(s["task"], s["shots"], s["seed"]): s for s in results["scores"]}
    assert sorted(runs) == [(t, k, s) for t in ("coco", "vqav2") for k in (0, 2) for s in (1, 2)]
    assert all(s["n"] == 4 and 0 <= s["score"] <= 1000 for s in runs.values())
    assert {(r["task"], r["shots"], r["seeds"]) for r in results["summary"]} == \
        {(t, k, 2) for t in ("coco", "vqav2") for k in (0, 2)}
    preds = json.loads((tmp_path / "out" / "predictions_vqav2_2shot_seed1.json").read_text())
    assert len(preds) == 4 and all({"question_id", "answer"} <= set(p) for p in preds)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "OpenFlamingo-9B (paper) |" in table.splitlines()[0]
    assert table.splitlines()[2].startswith("| coco | 0 |") and table.splitlines()[2].endswith("| 79.5 |")
    assert "| vqav2 | 2 |" in table and table.rstrip().endswith("| - |")  # the paper has no 2-shot column
    assert "[eval 8/8]" in proc.stderr and "ETA" in proc.stderr

    # Same seeds, same demonstrations, same model: the same predictions and scores.
    again = _evaluate(tmp_path, trained_checkpoint, datasets, tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(tmp_path / "again"))
    for name in os.listdir(tmp_path / "out"):
        if name.startswith("predictions_") or name == "results.md":
            assert (tmp_path / "out" / name).read_text() == (tmp_path / "again" / name).read_text(), name

    def scores(out):
        return [{k: v for k, v in s.items() if k != "seconds"}
                for s in json.loads((out / "results.json").read_text())["scores"]]
    assert scores(tmp_path / "out") == scores(tmp_path / "again")

    # A missing image and a question without annotation are skipped and counted, not fatal.
    os.remove(paths[-1])
    annotations = json.loads(open(datasets["vqav2"]["test_annotations"]).read())
    annotations["annotations"] = annotations["annotations"][:-1]  # not the question of the removed image
    open(datasets["vqav2"]["test_annotations"], "w").write(json.dumps(annotations))
    proc = _evaluate(tmp_path, trained_checkpoint, datasets, tmp_path / "bad")
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = {s["task"]: s["skipped"] for s in json.loads((tmp_path / "bad" / "results.json").read_text())["scores"]}
    assert skipped["coco"] == {"test/missing_image": 1}
    assert skipped["vqav2"] == {"test/no_annotation": 1, "test/missing_image": 1}


def test_shipped_yaml_and_readme_command_validate():
    """yamls/eval.yaml as shipped, and with the README's overrides, passes the schema."""
    from recipe.eval.config import parse

    cfg = parse(load_config(os.path.join(REPO, "yamls", "eval.yaml")))
    assert cfg.tasks == ["coco", "vqav2"] and cfg.published == "OpenFlamingo-3B"
    cfg = parse(load_config(os.path.join(REPO, "yamls", "eval.yaml"), [
        "variables.data=/data/eval", "checkpoint=runs/openflamingo-3b/checkpoints/latest-rank0.pt",
        "tasks=[coco,vqav2]", "shots=[0,4]"]))
    assert cfg.shots == [0, 4] and cfg.datasets["coco"].annotations == "/data/eval/coco/dataset_coco.json"
    cfg = parse(load_config(os.path.join(REPO, "yamls", "eval.yaml"), [  # docs/EVALUATION.md's Table 11 command
        "tasks=[coco,flickr,vqav2,ok_vqa,textvqa,vizwiz]", "shots=[0,4,8,16,32]", "seeds=[42,43,44]",
        "num_samples=null"]))
    assert len(cfg.datasets) == 6 and cfg.num_samples is None


def test_help_and_config_errors(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "recipe.eval", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "python -m recipe.eval" in proc.stdout
    proc = subprocess.run([PYTHON, "-m", "recipe.eval", os.path.join(REPO, "yamls", "eval.yaml"), "tasks=[cocoa]"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: tasks: unknown task 'cocoa'; known: coco, flickr, " \
                                                   "vqav2, ok_vqa, textvqa, vizwiz"
