"""FSDP1 over the real tiny Flamingo, two gloo processes on CPU: how much of the model stays gathered during
backward when the LAION and MMC4 passes share one backward (mixed microbatches) and when each pass has its
own (`train_data.microbatches: per_source`, the FSDP default)."""

import os
from functools import partial

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from model_helpers import laion_batch, mmc4_batch, randomize_trainable
from recipe.offline import assets
from recipe.model import build_flamingo
from recipe.model.lm import FlamingoLayer


def _worker(rank, world, init_file, vision_dir, tokenizer_dir, lm_dir, results):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model, tok, _ = build_flamingo(assets.register_tiny_vision(vision_dir), None, lm_dir, tokenizer_dir)
    randomize_trainable(model)  # open gates: gradients reach every trainable unit
    wrapped = FSDP(model, auto_wrap_policy=partial(lambda_auto_wrap_policy, lambda_fn=model.fsdp_wrap_fn),
                   use_orig_params=True, device_id=torch.device("cpu"))
    units = [u for u in FSDP.fsdp_modules(wrapped) if u is not wrapped]
    peak = [0]

    def count_gathered(*_):
        gathered = sum(u._handle.flat_param._full_param_padded.untyped_storage().size() > 0 for u in units)
        peak[0] = max(peak[0], gathered)

    for layer in (m for m in model.modules() if isinstance(m, FlamingoLayer)):
        layer.register_full_backward_pre_hook(count_gathered)

    def loss(batch):
        images, ids, mask, n = batch
        return wrapped(vision_x=images, lang_x=ids, attention_mask=mask, num_images=n).logits.square().mean()

    laion, mmc4 = laion_batch(tok), mmc4_batch(tok)
    (loss(laion) + loss(mmc4)).backward()
    mixed = peak[0]
    peak[0] = 0
    for batch in (laion, mmc4):
        loss(batch).backward()
    results[rank] = {"units": len(units), "lm_units": 2 * len(model.decoder_layers), "mixed": mixed,
                     "per_source": peak[0]}
    dist.destroy_process_group()


def test_one_pass_per_backward_keeps_units_sharded(tmp_path, assets_dir, tokenizer_dir, lm_dir_factory, vision_name):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), os.path.join(assets_dir, "vision"), tokenizer_dir,
                            lm_dir_factory("llama"), results), nprocs=2, join=True)
    for r in results.values():
        # Both passes in one backward: every LM unit (decoder layers and cross-attention blocks) is gathered
        # at once while the second pass back-propagates.
        assert r["mixed"] >= r["lm_units"]
        # One pass per backward: a unit is released after its backward; at most a few are gathered at once.
        assert r["per_source"] <= 3 < r["lm_units"]
