"""`make demo` (recipe.demo) end to end, shortened: synthetic upstream files -> convert/ -> MDS -> training ->
the grounding checks (held-out loss and recipe.eval's CIDEr, true vs shuffled images) -> outputs."""

import json
import math

from recipe.demo import run


def test_demo_runs_and_reports_its_checks(tmp_path):
    lines = []
    result = run(str(tmp_path / "demo_out"), steps=20, log=lines.append)
    summary = json.loads((tmp_path / "demo_out" / "summary.json").read_text())
    assert summary["steps"] == 20 and len(summary["generations"]) == 24
    for key in ("heldout_loss_true_images", "heldout_loss_shuffled_images", "heldout_cider_true_images",
                "heldout_cider_shuffled_images"):
        assert math.isfinite(summary[key]) and summary[key] >= 0 and summary[key] == result[key]
    assert any(line.startswith("held-out CIDEr, true images:") for line in lines)
    for name in ("loss_curves.png", "generations.md"):
        assert (tmp_path / "demo_out" / name).stat().st_size > 0
