"""`python -m recipe.data.inspection`: the HTML report of samples, images, trained tokens and filtered samples."""

import base64
import io
import os
import re

import numpy as np
from PIL import Image

from recipe.data import inspection
from recipe.data.sources import SourceConfig, build_source_dataset
from recipe.tokens import IGNORE_INDEX


def test_report_for_an_interleaved_mds(mds_root, tokenizer_dir, flamingo_tokenizer, image_transform, tmp_path):
    out = str(tmp_path / "report.html")
    path = os.path.join(mds_root, "mmc4")
    inspection.main([path, "--kind", "interleaved", "--tokenizer", tokenizer_dir, "--n", "12", "--out", out,
                  "--image-size", "32", "--max-tokens", "64", "--min-image-bytes", "0"])
    page = open(out).read()

    cfg = SourceConfig(kind="interleaved", batch_size=1, max_tokens=64, min_image_bytes=0, shuffle=False,
                       streams={"d": {"remote": path}})
    ds = build_source_dataset("t", cfg, flamingo_tokenizer, image_transform, seed=0, cache_root=str(tmp_path))
    kept, filtered = [], []
    for i in range(12):
        s = ds[i]
        (kept if s["sample_idx"] == i else filtered).append(s)
    blocks = re.findall(r'<div class="s( rej)?">(.*?)</div></div>', page, flags=re.S)
    assert len(blocks) == 12
    assert page.count("filtered: single_image_dropped") == len(filtered) > 0
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == sum(s["num_images"] for s in kept)
    assert Image.open(io.BytesIO(base64.b64decode(images[0]))).size == (96, 96)
    # the first kept sample's highlighted tokens are exactly its trained tokens
    first_kept = next(b for rej, b in blocks if not rej)
    assert first_kept.count('class="y') == sum(t != IGNORE_INDEX for t in kept[0]["labels"])
    assert first_kept.count('class="img"') == kept[0]["num_images"]


def test_thumbnail_undoes_the_normalization(image_transform):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    uri = inspection.thumbnail(image_transform(Image.fromarray(rgb)), image_transform, size=32)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert abs(int(back[..., 0].mean()) - 200) <= 2 and back[..., 1].max() <= 2
