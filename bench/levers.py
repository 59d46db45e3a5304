"""Model-only speed levers at the OF-3B / OF-9B shapes (no Composer, no dataloader; synthetic tensors):
frozen weights fp32 vs bf16, activation checkpointing, per-block torch.compile, and a CUDA kernel profile.
The figures in docs/PERFORMANCE.md ("Levers") came from this script on one H100.

    python -m bench.levers [--profile]     # writes $OUT/model_step.json (and profile.txt / profile.json)
"""

import functools
import json
import os
import sys
import time

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl, apply_activation_checkpointing, checkpoint_wrapper)
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, LlamaConfig

from recipe.model.embeddings import add_token_embeddings
from recipe.model.flamingo import Flamingo
from recipe.model.lm_adapters import describe_lm
from recipe.model.vision import VisionEncoder, load_open_clip_visual

MEDIA, EOC = 50278, 50277
OF3B = dict(layers=24, d=2048, heads=16, mlp=5504)
OF9B = dict(layers=32, d=4096, heads=32, mlp=11008)


def build(lm_bf16, xattn_every=1, layers=24, d=2048, heads=16, mlp=5504):
    torch.manual_seed(0)
    visual, _, _ = load_open_clip_visual("ViT-L-14", None)
    cfg = LlamaConfig(vocab_size=50280, hidden_size=d, intermediate_size=mlp, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
                      tie_word_embeddings=False)
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    lm.requires_grad_(False)
    layout = describe_lm(lm, 50277)
    add_token_embeddings(lm, layout, 50277, 3)
    m = Flamingo(VisionEncoder(visual), lm, media_token_id=MEDIA, eoc_token_id=EOC, lm_layout=layout,
                 cross_attn_every_n_layers=xattn_every).cuda()
    if lm_bf16:
        for p in m.parameters():
            if not p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    return m


def batch(b, L, T, nimg):
    ids = torch.randint(0, 50000, (b, L))
    for i in range(b):  # one <image> token per real image, spread over the row
        for k in range(int(nimg[i])):
            ids[i, 1 + k * (L // max(1, T))] = MEDIA
    return {k: v.cuda() for k, v in dict(
        vision_x=torch.randn(b, T, 3, 224, 224), lang_x=ids, attention_mask=torch.ones(b, L, dtype=torch.long),
        num_images=torch.as_tensor(nimg), labels=ids.clone()).items()}


def setup(lm_bf16=True, ckpt=False, compile_blocks=False, xattn_every=1, **shape):
    """(model, optimizer, [LAION batch 64x32 with 1 image, MMC4 batch 32x256 with 2-6 of 6 images real])."""
    m = build(lm_bf16, xattn_every, **(shape or OF3B))
    if ckpt:
        apply_activation_checkpointing(
            m, checkpoint_wrapper_fn=functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
            check_fn=m.activation_checkpointing_fn)
    if compile_blocks:  # as measured: the xattn blocks and decoder layers only
        for module in (*m.cross_attn_blocks, *m.decoder_layers):
            module.compile()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, fused=True)
    nimg = torch.randint(2, 7, (32,), generator=torch.Generator().manual_seed(0))
    return m, opt, [batch(64, 32, 1, [1] * 64), batch(32, 256, 6, nimg.tolist())]


def step(m, opt, batches, mult=(0.2, 1.0)):
    opt.zero_grad(set_to_none=True)
    for bt, w in zip(batches, mult):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = m(bt["vision_x"], bt["lang_x"], bt["attention_mask"], bt["num_images"]).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     bt["labels"][:, 1:].reshape(-1))
        (loss * w).backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step()


def timeit(m, opt, bs, n=8, warm=3):
    for _ in range(warm):
        step(m, opt, bs)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step(m, opt, bs)
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def run(name, **kwargs):
    m, opt, bs = setup(**kwargs)
    torch.cuda.reset_peak_memory_stats()
    r = dict(name=name, step_s=round(timeit(m, opt, bs), 4),
             peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1),
             real_images=sum(int(b["num_images"].sum()) for b in bs),
             trainable_M=round(sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, 1))
    print(json.dumps(r), flush=True)
    del m, opt
    torch.cuda.empty_cache()
    return r


def forward_times(m, bs):
    """Forward-only milliseconds (second of two runs) of the image encoding and the whole model per source."""
    out = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for name, b in zip(["laion", "mmc4"], bs):
            for part, fn in (("encode", lambda: m.encode_images(b["vision_x"], b["num_images"])),
                             ("full", lambda: m(b["vision_x"], b["lang_x"], b["attention_mask"], b["num_images"]))):
                for _ in range(2):
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    fn()
                    e.record()
                torch.cuda.synchronize()
                out[f"{name}_{part}_fwd_ms"] = s.elapsed_time(e)
    return out


def profile_main(out_dir):
    m, opt, bs = setup()
    res = {"eager_step_s": timeit(m, opt, bs), **forward_times(m, bs)}
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step(m, opt, bs)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
    with open(os.path.join(out_dir, "profile.txt"), "w") as f:
        f.write(table)
    print(table[:9000], flush=True)
    del m, opt
    torch.cuda.empty_cache()
    t = time.time()
    m, opt, bs = setup(compile_blocks=True)
    res["compiled_step_s"] = timeit(m, opt, bs, warm=4)
    res["compile_wall_s"] = time.time() - t
    print(json.dumps(res), flush=True)
    with open(os.path.join(out_dir, "profile.json"), "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    out_dir = os.environ.get("OUT", "/tmp")
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    if "--profile" in sys.argv:
        profile_main(out_dir)
    else:
        results = [run("3b fp32-frozen no-ckpt", lm_bf16=False), run("3b bf16-frozen no-ckpt"),
                   run("3b bf16-frozen ckpt", ckpt=True),
                   run("9b bf16-frozen ckpt", ckpt=True, xattn_every=4, **OF9B)]
        with open(os.path.join(out_dir, "model_step.json"), "w") as f:
            json.dump(results, f)
