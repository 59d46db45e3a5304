"""`python -m recipe.eval` end to end: a tiny model trained with yamls/demo.yaml, evaluated from its Composer
checkpoint on tiny COCO (Karpathy split file), VQAv2 (question / annotation files), Hateful Memes (JSON lines,
image folder) and ImageNet (1000 class folders) sets written in their real formats; scores per task, shots and
seed, predictions, determinism, and counted skips of bad examples."""

import json
import os
import subprocess

import numpy as np
import pytest

from recipe.train import main
from recipe.config import load_config
from recipe.eval.metrics.auc import roc_auc
from recipe.offline.eval_sets import Example, write_coco_vqav2, write_hateful_memes, write_imagenet
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


def _write_classification_sets(root) -> dict:
    """Hateful Memes: 14 memes (8 demonstrations; 6 evaluated, 3 of each label, so that any 4 hold both).
    ImageNet: one shape image per class in train/ and in val/."""
    rng = np.random.default_rng(1)
    memes = []
    for i in range(14):
        colour, shape, side = random_scene(rng)
        memes.append((to_jpeg(draw(colour, shape, side, rng)), caption(colour, shape, side), i % 2))
    imagenet = {split: [(label, to_jpeg(draw(*random_scene(rng), rng))) for label in range(1000)]
                for split in ("train", "val")}
    return {"hateful_memes": write_hateful_memes(str(root / "hm"), memes, n_train=8),
            "imagenet": write_imagenet(str(root / "imagenet"), imagenet)}


def _evaluate(tmp_path, checkpoint, datasets, out, *extra, tasks=("coco", "vqav2")):
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({"checkpoint": checkpoint, "tasks": list(tasks), "datasets": datasets,
                                  "shots": [0, 2], "seeds": [1, 2], "num_samples": 4, "query_set_size": 8,
                                  "batch_size": 2, "classes_per_forward": 300, "precision": "fp32",
                                  "device": "cpu", "out_dir": str(out), "published": "OpenFlamingo-9B"}))
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


def test_evaluates_classification(trained_checkpoint, tmp_path):
    """Hateful Memes (ROC-AUC of p("yes")) and ImageNet (top-1 over 1000 class names) by class ranking."""
    datasets = _write_classification_sets(tmp_path)
    tasks = ("hateful_memes", "imagenet")
    proc = _evaluate(tmp_path, trained_checkpoint, datasets, tmp_path / "out", tasks=tasks)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {(s["task"], s["shots"], s["seed"]): s for s in results["scores"]}
    assert sorted(runs) == [(t, k, s) for t in tasks for k in (0, 2) for s in (1, 2)]
    assert all(s["n"] == 4 and 0 <= s["score"] <= 100 for s in runs.values())
    for (task, k, seed), run in runs.items():
        preds = json.loads((tmp_path / "out" / f"predictions_{task}_{k}shot_seed{seed}.json").read_text())
        assert len(preds) == 4 and all(set(p) == {"id", "label", "prediction", "probability"} for p in preds)
        if task == "hateful_memes":  # the score is the AUC of p("yes"), which the predictions carry
            assert {p["label"] for p in preds} == {"no", "yes"}
            p_yes = [p["probability"] if p["prediction"] == "yes" else 1 - p["probability"] for p in preds]
            assert run["score"] == pytest.approx(100 * roc_auc([p["label"] == "yes" for p in preds], p_yes),
                                                 abs=1e-3)
        else:
            assert all(0.001 <= p["probability"] <= 1 for p in preds)  # the best of 1000 beats the uniform
            assert run["score"] == 100 * sum(p["label"] == p["prediction"] for p in preds) / 4
    table = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert table[2] == f"| hateful_memes | 0 | {_mean_std(runs, 'hateful_memes', 0)} | 2 | 51.6 |"
    assert table[4].startswith("| imagenet | 0 |") and table[4].endswith("| - |")  # not in the paper

    # Same seeds, same demonstrations, same model: the same predictions and scores.
    again = _evaluate(tmp_path, trained_checkpoint, datasets, tmp_path / "again", tasks=tasks)
    assert again.returncode == 0, again.stderr[-3000:]
    for name in os.listdir(tmp_path / "out"):
        if name.startswith("predictions_") or name == "results.md":
            assert (tmp_path / "out" / name).read_text() == (tmp_path / "again" / name).read_text(), name


def _mean_std(runs: dict, task: str, shots: int) -> str:
    import statistics

    scores = [runs[(task, shots, seed)]["score"] for seed in (1, 2)]
    return f"{round(statistics.fmean(scores), 2):.2f} ± {round(statistics.stdev(scores), 2):.2f}"


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
    cfg = parse(load_config(os.path.join(REPO, "yamls", "eval.yaml"), [  # docs/EVALUATION.md's classification command
        "tasks=[hateful_memes,imagenet]", "num_samples=null"]))
    assert cfg.datasets["imagenet"].root == "/data/eval/imagenet" and cfg.classes_per_forward == 32


def test_classification_config_errors():
    from recipe.config import ConfigError
    from recipe.eval.config import parse

    yaml = os.path.join(REPO, "yamls", "eval.yaml")
    with pytest.raises(ConfigError, match="classes_per_forward >= 1, .* classes_per_forward=0"):
        parse(load_config(yaml, ["classes_per_forward=0"]))
    with pytest.raises(ConfigError, match=r"unknown key 'datasets.imagenet.dir' \(known keys: root\)"):
        parse(load_config(yaml, ["tasks=[imagenet]", "datasets.imagenet={dir: /data}"]))


def test_help_and_config_errors(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "recipe.eval", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "python -m recipe.eval" in proc.stdout
    proc = subprocess.run([PYTHON, "-m", "recipe.eval", os.path.join(REPO, "yamls", "eval.yaml"), "tasks=[cocoa]"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: tasks: unknown task 'cocoa'; known: coco, flickr, " \
                                                   "vqav2, ok_vqa, textvqa, vizwiz, hateful_memes, imagenet"
