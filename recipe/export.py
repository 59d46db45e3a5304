"""Export a training checkpoint of this recipe for use elsewhere; no data, no GPU.

    python -m recipe.export CHECKPOINT --out checkpoint.pt     # OpenFlamingo layout (reference code, fine-tuning)
    python -m recipe.export CHECKPOINT --hf DIR                # config.json + model.safetensors (from_pretrained)

CHECKPOINT: a Composer checkpoint file (e.g. runs/<run>/checkpoints/latest-rank0.pt) or a sharded checkpoint
folder (`state_dict_type: sharded`). Composer checkpoints are pickles: export only your own. The model is
rebuilt from the config saved in the checkpoint, with random LM / vision weights (only the LM's config and
tokenizer are read), then every weight comes from the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile


def read_composer_checkpoint(path: str) -> dict:
    """The checkpoint's `state` dict, from a file or a sharded (torch.distributed.checkpoint) folder."""
    import torch

    if os.path.isdir(path):
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory() as tmp:
            whole = os.path.join(tmp, "checkpoint.pt")
            dcp_to_torch_save(path, whole)
            return torch.load(whole, map_location="cpu", weights_only=False)["state"]
    return torch.load(path, map_location="cpu", weights_only=False)["state"]


def load_trained_model(path: str):
    """(Flamingo with the checkpoint's weights, tokenizer, image transform, its `ModelConfig`) from a Composer
    checkpoint of this recipe."""
    from recipe.trainer_parts import build_flamingo_model
    from recipe.composer_model import MODEL_CONFIG_KEY
    from recipe.config import ModelConfig, build_dataclass

    state = read_composer_checkpoint(path)["model"]
    saved = state.pop(MODEL_CONFIG_KEY, None)
    if not isinstance(saved, dict) or "model_config" not in saved:
        raise ValueError(f"{path}: no model config in this checkpoint (written by an older version of the recipe)")
    cfg = build_dataclass(ModelConfig, saved["model_config"], "model")
    build_cfg = dataclasses.replace(cfg, lm_random_init=True, vision_pretrained=None, openflamingo_checkpoint=None,
                                    compile_blocks=False, cuda_graphs=False)
    flamingo, tokenizer, image_transform = build_flamingo_model(build_cfg)
    weights = {k.removeprefix("model."): v for k, v in state.items()}
    result = flamingo.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: weights do not match the saved model config: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return flamingo, tokenizer, image_transform, cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe.export", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("checkpoint", help="Composer checkpoint file or sharded checkpoint folder")
    parser.add_argument("--out", help="write the trained weights as an OpenFlamingo checkpoint.pt")
    parser.add_argument("--hf", metavar="DIR", help="write config.json + model.safetensors (recipe.pretrained)")
    args = parser.parse_args(argv)
    if not (args.out or args.hf):
        parser.error("give --out FILE, --hf DIR or both")
    if not os.path.exists(args.checkpoint):
        parser.error(f"no such checkpoint: {args.checkpoint}")

    import torch

    from recipe.model import export_openflamingo_checkpoint
    from recipe.pretrained import save_pretrained

    try:
        flamingo, _, _, cfg = load_trained_model(args.checkpoint)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        torch.save(export_openflamingo_checkpoint(flamingo), args.out)
        print(f"wrote {args.out}")
    if args.hf:
        save_pretrained(flamingo, dataclasses.asdict(cfg), args.hf)
        print(f"wrote {args.hf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
