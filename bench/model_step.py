"""Flamingo training step (forward + backward) and greedy generation: ours vs the reference OpenFlamingo 2.0.1
(einsum attention, encodes padded image slots), same weights, on one GPU, bf16 autocast over fp32 weights.

    python -m bench.model_step [--vision ViT-L-14] [--hidden 2048] [--layers 8] [--batch 8] [--json out.json]

Random-init backbones built from configs (nothing downloaded): an open_clip ViT and a LLaMA-style LM of
the given width/depth, cross-attention every layer. MMC4-shaped batch: 256 tokens, 6 image slots of which
a random 1-6 are real (about half the slots on average). Also reports the fp32 and bf16 logit differences
between the two implementations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

from recipe.offline import assets
from recipe.model import build_flamingo, export_openflamingo_checkpoint


def _timed(fn, steps):
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vision", default="ViT-L-14")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    from open_flamingo.src.factory import create_model_and_transforms

    tmp = tempfile.mkdtemp()
    words = ["red", "green", "blue", "circle", "square", "photo", "of", "the", "a", "on", "left", "right"]
    tok_dir = assets.train_tokenizer([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 50,
                                     os.path.join(tmp, "tok"), vocab_size=400)
    from transformers import AutoTokenizer
    vocab = len(AutoTokenizer.from_pretrained(tok_dir))
    lm_dir = assets.save_tiny_lm("llama", os.path.join(tmp, "lm"), vocab, hidden=args.hidden,
                                 layers=args.layers, heads=args.hidden // 128)
    dev = torch.device("cuda")
    ours, tok, _ = build_flamingo(args.vision, None, lm_dir, tok_dir)
    ref, _, _ = create_model_and_transforms(args.vision, None, lm_dir, tok_dir, use_local_files=True)
    ref.vision_encoder.final_ln_after_pool = True
    ref.vision_encoder.load_state_dict(ours.vision_encoder.visual.state_dict())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in ours.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02 + (0.5 if p.numel() == 1 else 0))
    ref.load_state_dict(export_openflamingo_checkpoint(ours), strict=False)
    ours.to(dev).train()
    ref.to(dev).train()

    b, t, size = args.batch, 6, ours.vision_encoder.visual.image_size[0]
    num_images = torch.randint(1, t + 1, (b,), generator=g)
    images = torch.randn(b, t, 3, size, size, generator=g)
    images[torch.arange(t).unsqueeze(0) >= num_images.unsqueeze(1)] = 0
    image_id, eoc = ours.media_token_id, ours.eoc_token_id
    ids = torch.randint(0, vocab, (b, args.seq), generator=g)
    for row in range(b):  # <image> ... <|endofchunk|> chunks, one per real image
        starts = torch.linspace(0, args.seq - 8, int(num_images[row]) + 1).long()[:-1]
        ids[row, starts] = image_id
        ids[row, starts[1:] - 1] = eoc
    mask = torch.ones_like(ids)
    images, ids, mask, num_images = images.to(dev), ids.to(dev), mask.to(dev), num_images.to(dev)

    results = {"device": torch.cuda.get_device_name(), "vision": args.vision, "hidden": args.hidden,
               "layers": args.layers, "batch": b, "seq": args.seq,
               "real_image_slots": int(num_images.sum()), "image_slots": b * t}
    with torch.no_grad():
        ours.eval(), ref.eval()
        a = ours(images, ids, mask, num_images=num_images).logits
        r = ref(images.unsqueeze(2), ids, mask).logits
        results["fp32_max_abs_logit_diff"] = (a - r).abs().max().item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ab = ours(images, ids, mask, num_images=num_images).logits.float()
            rb = ref(images.unsqueeze(2), ids, mask).logits.float()
        results["bf16_vs_fp32_max_abs_logit_diff"] = {"ours": (ab - a).abs().max().item(),
                                                      "reference": (rb - r).abs().max().item()}
        results["logit_scale"] = a.abs().max().item()
        ours.train(), ref.train()

    def step(model, six_d):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if six_d:
                logits = model(images.unsqueeze(2), ids, mask).logits
            else:
                logits = model(images, ids, mask, num_images=num_images).logits
        torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten()).backward()
        model.zero_grad(set_to_none=True)

    for name, model, six_d in (("ours", ours, False), ("reference", ref, True)):
        step(model, six_d)
        torch.cuda.reset_peak_memory_stats()
        results[f"train_step_s_{name}"] = _timed(lambda: step(model, six_d), args.steps)
        results[f"peak_mem_gib_{name}"] = torch.cuda.max_memory_allocated() / 2**30

    tok.padding_side = "left"
    prompt = ids[:, :64]
    n_prompt = (prompt == image_id).sum(1).clamp(min=1)
    kw = dict(max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id, bad_words_ids=[[image_id]])
    ours.eval(), ref.eval()
    runs = (("ours", lambda: ours.generate(images, prompt, num_images=n_prompt, **kw)),
            ("reference", lambda: ref.generate(images.unsqueeze(2), prompt, **kw)))
    with torch.no_grad():
        fp32 = {name: fn() for name, fn in runs}  # fp32: exact agreement expected
        results["greedy_generations_equal_fp32"] = bool(torch.equal(fp32["ours"], fp32["reference"]))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for name, fn in runs:
                fn()
                results[f"generate_s_bf16_{name}"] = _timed(fn, 3)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
