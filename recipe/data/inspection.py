"""See what the model is trained on: an HTML page with, per sample, the model-input images, the decoded text
with its `<image>` positions, the tokens that are targets (highlighted), and the samples that were filtered
out with the rule that rejected them.

    python -m recipe.data.inspection <mds folder or s3://...> --kind interleaved --tokenizer <hf tokenizer> \
        --n 16 --out report.html

`render_report(dataset, indices)` works on any dataset built by `recipe.data.sources.build_source_dataset`,
so a training config can call it for each of its sources.
"""

from __future__ import annotations

import argparse
import base64
import html
import io

import numpy as np
import torch
from PIL import Image

from recipe.data.shaping import Reject, ShapingDataset
from recipe.tokens import END_OF_CHUNK, IGNORE_INDEX, IMAGE, PAD

_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1100px} .s{border:1px solid #ccc;margin:1em 0;padding:.8em}
.rej{background:#fff3f3} img{margin:2px;border:1px solid #999;image-rendering:pixelated}
.t{font-family:monospace;white-space:pre-wrap;line-height:1.7} .y{background:#c8f7c5} .n{color:#888}
.img{background:#ffd36b;font-weight:bold;padding:0 3px} .eoc{background:#b5d3ff} .meta{color:#555;font-size:90%}
"""


def _normalization(transform) -> tuple[np.ndarray, np.ndarray] | None:
    for t in getattr(transform, "transforms", []):
        if hasattr(t, "mean") and hasattr(t, "std"):
            return np.asarray(t.mean, np.float32)[:, None, None], np.asarray(t.std, np.float32)[:, None, None]
    return None


def thumbnail(image: torch.Tensor, transform, size: int = 96) -> str:
    """A model-input image (3,H,W) as an inline PNG data URI, un-normalized when the transform normalizes."""
    arr = image.float().numpy()
    norm = _normalization(transform)
    if norm is not None:
        arr = arr * norm[1] + norm[0]
    else:
        arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-6)
    pil = Image.fromarray((np.clip(arr, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8))
    scale = max(1, size // max(pil.size))
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _tokens_html(tokenizer, ids: list[int], labels: list[int]) -> str:
    out, n_image, n_pad = [], 0, 0
    for tok, lab in zip(ids, labels):
        piece = tokenizer.decode([tok])
        if piece == PAD or tok == tokenizer.pad_token_id and lab == IGNORE_INDEX:
            n_pad += 1
            continue
        if piece == IMAGE:
            n_image += 1
            out.append(f'<span class="img">&lt;image {n_image}&gt;</span>')
            continue
        cls = ("y" if lab != IGNORE_INDEX else "n") + (" eoc" if piece == END_OF_CHUNK else "")
        out.append(f'<span class="{cls}">{html.escape(piece)}</span>')
    pad = f' <span class="n">[{n_pad} pad]</span>' if n_pad else ""
    return "".join(out) + pad


def _sample_html(dataset: ShapingDataset, idx: int) -> str:
    raw = dataset.get_raw(idx)
    head = f"<b>#{idx}</b> key <code>{html.escape(str(raw.get('key')))}</code>"
    if "kind" in raw:
        head += f" kind {html.escape(raw['kind'])}, {len(raw['image_sizes'])} images in the document"
    rng = np.random.default_rng((dataset.seed, dataset.current_epoch, idx))
    try:
        s = dataset.shape(raw, rng)
    except Reject as r:
        text = raw.get("caption") or " | ".join(raw.get("texts", []))
        return (f'<div class="s rej">{head}<br><b>filtered: {html.escape(r.reason)}</b>'
                f'<div class="t n">{html.escape(text[:600])}</div></div>')
    n = s["num_images"]
    images = "".join(f'<img src="{thumbnail(img, dataset.image_transform)}" title="image {k + 1}">'
                     for k, img in enumerate(s["images"][:n]))
    order = f" (document images {s['image_order']} in &lt;image&gt; order)" if "image_order" in s else ""
    trained = sum(lab != IGNORE_INDEX for lab in s["labels"])
    meta = f'<div class="meta">{n} image(s){order}; {len(s["input_ids"])} tokens, {trained} trained</div>'
    return (f'<div class="s">{head}{meta}<div>{images}</div>'
            f'<div class="t">{_tokens_html(dataset.tokenizer, s["input_ids"], s["labels"])}</div></div>')


def render_report(dataset: ShapingDataset, indices, title: str = "samples") -> str:
    """An HTML page for the dataset samples at `indices` (filtered ones included, with their reason)."""
    body = "".join(_sample_html(dataset, int(i)) for i in indices)
    legend = ('<p><span class="y">trained token</span> <span class="n">not trained</span> '
              '<span class="img">&lt;image k&gt;</span> (k-th image slot) <span class="eoc y">end of chunk</span></p>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h2>{html.escape(title)}</h2>{legend}{body}</body></html>")


def _tokenizer(path: str):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    # The same additions build_flamingo makes, so the ids match training.
    tok.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK, IMAGE]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": PAD})
    return tok


def main(argv: list[str] | None = None) -> str:
    import open_clip

    from recipe.data.sources import SourceConfig, build_source_dataset, default_cache_root

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="MDS folder (local path or s3://...)")
    p.add_argument("--kind", choices=["pairs", "interleaved"], required=True)
    p.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer folder or name of the LM")
    p.add_argument("--n", type=int, default=16, help="number of samples (from the start of the dataset)")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", default="report.html")
    p.add_argument("--image-size", type=int, default=224, help="vision encoder input size (open_clip eval transform)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--min-image-bytes", type=int, default=11_000)
    p.add_argument("--sim-threshold", type=float, default=0.24)
    p.add_argument("--assignment", choices=["one_to_one", "argmax"], default="one_to_one")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = SourceConfig(kind=args.kind, batch_size=1, streams={"data": {"remote": args.path}},
                       max_tokens=args.max_tokens, min_image_bytes=args.min_image_bytes,
                       sim_threshold=args.sim_threshold, assignment=args.assignment, shuffle=False)
    dataset = build_source_dataset("inspect", cfg, _tokenizer(args.tokenizer),
                                   open_clip.image_transform(args.image_size, is_train=False), seed=args.seed,
                                   cache_root=default_cache_root(), split="inspect")
    stop = min(args.start + args.n, dataset.num_samples)
    page = render_report(dataset, range(args.start, stop), title=f"{args.path} ({args.kind}) #{args.start}-{stop - 1}")
    with open(args.out, "w") as f:
        f.write(page)
    print(f"wrote {args.out} ({stop - args.start} samples)")
    return args.out


if __name__ == "__main__":
    main()
