"""One rank of a data-loading run for the resumption tests (launched as a subprocess per rank).

usage: resume_worker.py SPEC.json OUT_PREFIX
SPEC: {"tokenizer_dir", "sources": {name: SourceConfig fields}, "steps", "num_workers", "seed",
       "load_state": path or null, optional "cache_root", optional "crash": true}
Writes OUT_PREFIX.rank<R>.json with the per-step `sample_idx` of every source, and (rank 0)
OUT_PREFIX.state.json with `dataset.state_dict(samples so far in the epoch, True)` as Composer would save it.
"""

import json
import os
import signal
import sys

import torch.distributed as dist


def main(spec_path: str, out_prefix: str) -> None:
    import open_clip
    from transformers import AutoTokenizer

    from recipe.data.sources import build_train_dataloader
    from recipe.tokens import END_OF_CHUNK, IMAGE, PAD

    spec = json.load(open(spec_path))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    tok = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    tok.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK, IMAGE], "pad_token": PAD})
    spec_loader = build_train_dataloader(spec["sources"], tok, open_clip.image_transform(32, is_train=False),
                                         seed=spec["seed"], num_workers=spec["num_workers"],
                                         cache_root=spec.get("cache_root"))
    dataset = spec_loader.dataloader.dataset
    if spec["load_state"]:
        dataset.load_state_dict(json.load(open(spec["load_state"])))
    steps, in_epoch = [], 0
    while len(steps) < spec["steps"]:
        in_epoch = 0
        for batch in spec_loader.dataloader:
            steps.append({n: b["sample_idx"].tolist() for n, b in batch.items()})
            in_epoch += 1
            if len(steps) == spec["steps"]:
                break
    if spec.get("crash"):
        # die like an OOM/scheduler kill: the whole process group (Python's resource tracker included)
        print("crashing", flush=True)
        os.killpg(os.getpgid(0), signal.SIGKILL)
    rank = dist.get_rank() if dist.is_initialized() else 0
    with open(f"{out_prefix}.rank{rank}.json", "w") as f:
        json.dump(steps, f)
    if rank == 0:
        resumed = json.load(open(spec["load_state"]))["steps"] if spec["load_state"] else 0
        done = in_epoch + (resumed if len(steps) == in_epoch else 0)
        with open(f"{out_prefix}.state.json", "w") as f:
            json.dump(dataset.state_dict(done * dataset.samples_per_step, True), f)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
