"""The model to evaluate, from what a user has: a Composer checkpoint of this recipe (file or sharded folder),
a folder written by `python -m recipe.export --hf`, or released OpenFlamingo weights (`checkpoint.pt`, a folder
holding one, or a Hugging Face Hub repo id) with the `model` config section that describes them."""

from __future__ import annotations

import dataclasses
import os

CONFIG_FILE = "config.json"


def load_model(checkpoint: str, model: dict | None = None):
    """(Flamingo in eval mode, tokenizer, image transform). `model`: `model` config keys; required for released
    OpenFlamingo weights (they carry no config), ignored otherwise."""
    from recipe.hub import is_hub_id

    if os.path.isdir(checkpoint) and os.path.isfile(os.path.join(checkpoint, CONFIG_FILE)):
        from recipe.pretrained import from_pretrained

        flamingo, tokenizer, transform = from_pretrained(checkpoint)
    elif is_hub_id(checkpoint) or _holds_tensors_only(checkpoint):
        flamingo, tokenizer, transform = _released(checkpoint, model)
    else:  # a Composer checkpoint: a pickle of our own run (see recipe.export)
        from recipe.export import load_trained_model

        flamingo, tokenizer, transform, _ = load_trained_model(checkpoint)
    return flamingo.eval(), tokenizer, transform


def _holds_tensors_only(path: str) -> bool:
    """OpenFlamingo's checkpoint.pt (or a folder holding one) loads with weights_only; Composer's does not."""
    import pickle

    import torch

    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "checkpoint.pt"))
    try:
        torch.load(path, map_location="meta", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError):
        return False
    return True


def _released(checkpoint: str, model: dict | None):
    from recipe.trainer_parts import build_flamingo_model
    from recipe.config import ModelConfig, build_dataclass

    if not model:
        raise ValueError(f"checkpoint {checkpoint}: released OpenFlamingo weights carry no model config; give the "
                         "`model` section (vision_name, lm_path, cross_attn_every_n_layers, ...)")
    cfg = build_dataclass(ModelConfig, model, "model")
    cfg = dataclasses.replace(cfg, openflamingo_checkpoint=checkpoint, compile_blocks=False, cuda_graphs=False,
                              frozen_dtype="fp32")
    return build_flamingo_model(cfg)
