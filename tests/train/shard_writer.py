"""Rewrites a Composer checkpoint file of this recipe as a sharded checkpoint folder, from 2 gloo processes
that each hold half of every weight under FSDP2 (`fully_shard` over the model's FSDP units): the layout of
`state_dict_type: sharded` (torch.distributed.checkpoint, one `.distcp` file per rank). Composer's FSDP needs
CUDA, so this is how a CPU test gets a real multi-rank sharded checkpoint."""

import dataclasses
import os

import torch
import torch.distributed as dist


def _worker(rank: int, world: int, checkpoint_file: str, folder: str, init_file: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    from recipe.composer_model import MODEL_CONFIG_KEY
    from recipe.export import load_trained_model

    # Composer reads the rank from the environment (a Trainer earlier in the test process set RANK=0).
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      NODE_RANK="0")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    flamingo, _, _, cfg = load_trained_model(checkpoint_file)
    for module in [m for m in flamingo.modules() if flamingo.fsdp_wrap_fn(m)]:
        fully_shard(module)
    fully_shard(flamingo)
    model = {f"model.{k}": v for k, v in get_model_state_dict(flamingo).items()}
    model[MODEL_CONFIG_KEY] = {"model_config": dataclasses.asdict(cfg)}
    dcp.save({"state": {"model": model}}, checkpoint_id=folder)
    dist.destroy_process_group()


def write_sharded(checkpoint_file: str, folder: str, world: int = 2) -> str:
    init_file = os.path.join(os.path.dirname(folder), "shard_writer.pg")
    torch.multiprocessing.spawn(_worker, args=(world, checkpoint_file, folder, init_file), nprocs=world, join=True)
    return folder
