"""A trained Flamingo as a folder to share (e.g. on the Hugging Face Hub): `config.json` holds the run's
`model` config section (everything the builder needs: vision tower, LM, tokenizer, sizes, what trains) and
`model.safetensors` the weights training changed. `from_pretrained` builds the model from the config's LM and
vision tower, as training did, and puts those weights back; every one must be there (strict)."""

from __future__ import annotations

import dataclasses
import json
import os

import torch

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMAT = "flamingo-recipe/1"


def trained_state(flamingo: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (a tied parameter once, under its first name)."""
    return {name: p.detach().contiguous().cpu() for name, p in flamingo.named_parameters() if p.requires_grad}


def save_pretrained(flamingo: torch.nn.Module, model_config: dict, folder: str) -> None:
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CONFIG_FILE), "w") as f:
        json.dump({"format": FORMAT, "model": model_config}, f, indent=2)
    save_file(trained_state(flamingo), os.path.join(folder, WEIGHTS_FILE), metadata={"format": FORMAT})


def read_model_config(folder: str, **overrides):
    """The folder's `ModelConfig` (schema-checked), with `overrides` (e.g. `frozen_dtype`) applied."""
    from recipe.config import ModelConfig, build_dataclass

    with open(os.path.join(folder, CONFIG_FILE)) as f:
        saved = json.load(f)
    if saved.get("format") != FORMAT:
        raise ValueError(f"{folder}: not a {FORMAT} folder (config.json format {saved.get('format')!r})")
    return build_dataclass(ModelConfig, {**saved["model"], **overrides}, "model")


def from_pretrained(folder: str, **overrides):
    """(Flamingo, tokenizer, image_transform) as saved by `save_pretrained`; `overrides` are `model` config keys.
    The LM and vision weights come from the config's `lm_path` / `vision_pretrained`, as in training."""
    from safetensors.torch import load_file

    from recipe.trainer_parts import build_flamingo_model

    cfg = read_model_config(folder, **overrides)
    cfg = dataclasses.replace(cfg, openflamingo_checkpoint=None, compile_blocks=False, cuda_graphs=False)
    flamingo, tokenizer, image_transform = build_flamingo_model(cfg)
    weights = load_file(os.path.join(folder, WEIGHTS_FILE))
    expected = set(trained_state(flamingo))
    if set(weights) != expected:
        raise ValueError(f"{folder}: {WEIGHTS_FILE} does not match the model: missing "
                         f"{sorted(expected - set(weights))}, unexpected {sorted(set(weights) - expected)}")
    flamingo.load_state_dict(weights, strict=False)
    return flamingo, tokenizer, image_transform
