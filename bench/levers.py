"""Model-only speed levers at the OF-3B / OF-9B shapes (no Composer, no dataloader; synthetic tensors):
frozen weights fp32 vs bf16, activation checkpointing, per-block torch.compile, and a CUDA kernel profile.
The figures in docs/PERFORMANCE.md ("Levers") came from this script on one H100.

    python bench/levers.py [--profile]     # writes $OUT/model_step.json (and profile.txt / profile.json)
"""
import json, os, sys, time
import torch
from transformers import LlamaConfig, AutoModelForCausalLM
from recipe.model.embeddings import add_token_embeddings
from recipe.model.flamingo import Flamingo
from recipe.model.vision import VisionEncoder, load_open_clip_visual

def build(lm_bf16, xattn_every=1, layers=24, d=2048, heads=16, mlp=5504):
    torch.manual_seed(0)
    visual, _, _ = load_open_clip_visual("ViT-L-14", None)
    vision = VisionEncoder(visual)
    cfg = LlamaConfig(vocab_size=50280, hidden_size=d, intermediate_size=mlp, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
                      tie_word_embeddings=False, attn_implementation="sdpa")
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    lm.requires_grad_(False)
    add_token_embeddings(lm, 50277, 3)
    m = Flamingo(vision, lm, media_token_id=50278, eoc_token_id=50277, cross_attn_every_n_layers=xattn_every)
    m = m.cuda()
    if lm_bf16:
        for p in list(m.lang_encoder.parameters()) + list(m.vision_encoder.parameters()):
            if not p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    return m

def batch(b, L, T, nimg):
    ids = torch.randint(0, 50000, (b, L))
    # place <image> tokens
    for i in range(b):
        for k in range(int(nimg[i])):
            ids[i, 1 + k * (L // max(1, T))] = 50278
    labels = ids.clone()
    return dict(vision_x=torch.randn(b, T, 3, 224, 224), lang_x=ids, attention_mask=torch.ones(b, L, dtype=torch.long),
                num_images=torch.as_tensor(nimg), labels=labels)

def step(m, opt, batches, mult):
    opt.zero_grad(set_to_none=True)
    tot = 0
    for bt, w in zip(batches, mult):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(bt["vision_x"], bt["lang_x"], bt["attention_mask"], bt["num_images"])
            logits = out.logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), bt["labels"][:, 1:].reshape(-1))
        (loss * w).backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step()

def run(name, lm_bf16, ckpt, xattn_every=1, **shape):
    m = build(lm_bf16, xattn_every, **shape)
    if ckpt:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing, checkpoint_wrapper, CheckpointImpl
        import functools
        apply_activation_checkpointing(m, checkpoint_wrapper_fn=functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT), check_fn=m.activation_checkpointing_fn)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    nimg = torch.randint(2, 7, (32,), generator=g)
    laion = {k: v.cuda() for k, v in batch(64, 32, 1, [1] * 64).items()}
    mmc4 = {k: v.cuda() for k, v in batch(32, 256, 6, nimg.tolist()).items()}
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        step(m, opt, [laion, mmc4], [0.2, 1.0])
    torch.cuda.synchronize(); t = time.perf_counter(); n = 8
    for _ in range(n):
        step(m, opt, [laion, mmc4], [0.2, 1.0])
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / n
    r = dict(name=name, step_s=round(dt, 4), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1),
             real_images=64 + int(nimg.sum()), trainable_M=round(sum(p.numel() for p in params) / 1e6, 1))
    print(json.dumps(r), flush=True)
    del m, opt; torch.cuda.empty_cache()
    return r

from torch.profiler import profile, ProfilerActivity

def setup(compile_blocks=False):
    m = build(True)
    if compile_blocks:
        for blk in m.cross_attn_blocks:
            blk.compile()
        for layer in m.decoder_layers:
            layer.compile()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    nimg = torch.randint(2, 7, (32,), generator=g)
    laion = {k: v.cuda() for k, v in batch(64, 32, 1, [1] * 64).items()}
    mmc4 = {k: v.cuda() for k, v in batch(32, 256, 6, nimg.tolist()).items()}
    return m, opt, [laion, mmc4]

def timeit(m, opt, bs, n=8, warm=3):
    for _ in range(warm):
        step(m, opt, bs, [0.2, 1.0])
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n):
        step(m, opt, bs, [0.2, 1.0])
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n

def module_times(m, bs):
    # forward-only time of parts, under autocast
    ev = lambda: torch.cuda.Event(enable_timing=True)
    out = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for name, b in zip(["laion", "mmc4"], bs):
            for _ in range(2):
                s, e = ev(), ev(); s.record(); lat = m.encode_images(b["vision_x"], b["num_images"]); e.record()
            torch.cuda.synchronize(); out[name + "_encode_fwd_ms"] = s.elapsed_time(e)
            for _ in range(2):
                s, e = ev(), ev(); s.record(); m(b["vision_x"], b["lang_x"], b["attention_mask"], b["num_images"]); e.record()
            torch.cuda.synchronize(); out[name + "_full_fwd_ms"] = s.elapsed_time(e)
    return out

def profile_main():
    OUT = os.environ.get("OUT", "/tmp")
    m, opt, bs = setup()
    res = {"eager_step_s": timeit(m, opt, bs)}
    res.update(module_times(m, bs))
    print(json.dumps(res), flush=True)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step(m, opt, bs, [0.2, 1.0])
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
    open(os.path.join(OUT, "profile.txt"), "w").write(table)
    print(table[:9000], flush=True)
    del m, opt; torch.cuda.empty_cache()
    t = time.time()
    m, opt, bs = setup(compile_blocks=True)
    res["compiled_step_s"] = timeit(m, opt, bs, warm=4)
    res["compile_wall_s"] = time.time() - t
    print(json.dumps(res), flush=True)
    json.dump(res, open(os.path.join(OUT, "profile.json"), "w"))


if __name__ == "__main__" and "--profile" in sys.argv:
    profile_main()
elif __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    res = []
    res.append(run("3b fp32-frozen no-ckpt", False, False))
    res.append(run("3b bf16-frozen no-ckpt", True, False))
    res.append(run("3b bf16-frozen ckpt", True, True))
    res.append(run("9b bf16-frozen ckpt", True, True, xattn_every=4, layers=32, d=4096, heads=32, mlp=11008))
    json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp"), "model_step.json"), "w"))
