"""Interop with OpenFlamingo `checkpoint.pt` state dicts.

Their layout: `perceiver.layers.<i>.0.*` (attention) / `.1.*` (FFN) / `perceiver.latents|norm.*`;
`lang_encoder.<decoder layers>.<i>.gated_cross_attn_layer.*` (same names as ours); full-vocabulary
embedding matrices (e.g. `lang_encoder.transformer.wte.weight`, `lang_encoder.embed_out.weight`) whose rows
>= the base vocab are our `new_token_weight` rows. Full (FSDP) dumps also hold frozen LM / vision weights
and the reference's `old_decoder_blocks` / `gated_cross_attn_layers` aliases of the same tensors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from recipe.model.embeddings import token_modules

_OURS_PERCEIVER = re.compile(r"^perceiver\.layers\.(\d+)\.(attn|ff)\.")
_REF_PERCEIVER = re.compile(r"^perceiver\.layers\.(\d+)\.([01])\.")
_REF_ALIASES = ("lang_encoder.old_decoder_blocks.", "lang_encoder.gated_cross_attn_layers.")
# Name segments that FSDP, activation checkpointing and torch.compile add to the wrapped modules' keys (DDP
# adds a `module.` prefix).
_WRAPPER_SEGMENTS = re.compile(r"(_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


@dataclass
class LoadReport:
    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)      # trainable params of ours the checkpoint lacks
    unexpected_keys: list[str] = field(default_factory=list)   # checkpoint keys with no counterpart in ours
    # Added-token rows the reference never saves (an untied output head's; an embedding it froze), set as the
    # reference's own model has them when it loads the checkpoint (see `reference_new_rows`).
    defaulted_keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"loaded {len(self.loaded_keys)} tensors"
        if self.defaulted_keys:
            line += f"; not in the checkpoint, set as the reference sets them at load: {', '.join(self.defaulted_keys)}"
        return line


def _perceiver_to_ref(name: str) -> str:
    return _OURS_PERCEIVER.sub(lambda m: f"perceiver.layers.{m[1]}.{'0' if m[2] == 'attn' else '1'}.", name)


def _perceiver_from_ref(name: str) -> str:
    return _REF_PERCEIVER.sub(lambda m: f"perceiver.layers.{m[1]}.{'attn' if m[2] == '0' else 'ff'}.", name)


def _token_modules(model: nn.Module):
    """token_modules() of the model's LM, with paths from the model's root."""
    emb_name, emb, head_name, head = token_modules(model.lang_encoder)
    return f"lang_encoder.{emb_name}", emb, (None if head is None else f"lang_encoder.{head_name}"), head


def reference_new_rows(base: torch.Tensor, base_vocab_size: int, num_new: int) -> torch.Tensor:
    """The added-token rows of a matrix whose rows the checkpoint does not hold, as the reference's model has
    them after `resize_token_embeddings(len(tokenizer))`: rows the LM already had past its tokenizer (MPT's
    padding rows) are kept; rows it grows get the mean of all old rows (transformers >= 4.46 samples them
    from a normal around that mean with 1e-9 of the rows' covariance, i.e. the mean to ~1e-5)."""
    old = base.shape[0]
    rows = base.detach().float().mean(dim=0).expand(num_new, *base.shape[1:]).clone()
    kept = max(0, min(old - base_vocab_size, num_new))
    rows[:kept] = base[base_vocab_size:base_vocab_size + kept].detach().float()
    return rows


def _trainable_names(model: nn.Module) -> list[str]:
    names = []
    for name, _ in model.named_parameters():  # a tied parameter counts once, under its first name
        if (name.startswith("perceiver.") or ".gated_cross_attn_layer." in name
                or name.endswith(("new_token_weight", "new_token_bias"))):
            names.append(name)
    return names


def export_openflamingo_checkpoint(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our trainable state in OpenFlamingo's layout: Perceiver, xattn blocks and the full-vocabulary
    input/output embedding matrices (base rows followed by the added-token rows), plus any other parameter
    that trains (unfrozen LM layers / norms, vision blocks; see `recipe.model.trainable`) under the
    reference's name. The reference model loads it with `load_state_dict(sd, strict=False)`."""
    emb_name, emb, head_name, head = _token_modules(model)
    out = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("perceiver."):
            out[_perceiver_to_ref(name)] = tensor.detach().clone()
        elif ".gated_cross_attn_layer." in name:
            out[name] = tensor.detach().clone()
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    for name, tensor in model.state_dict().items():
        if name in trained and not name.startswith(("perceiver.", f"{emb_name}.", f"{head_name or emb_name}.")) \
                and ".gated_cross_attn_layer." not in name:
            out[name.replace("vision_encoder.visual.", "vision_encoder.", 1)] = tensor.detach().clone()
    base_v = emb.base_vocab_size
    out[f"{emb_name}.weight"] = torch.cat((emb.base.weight[:base_v], emb.new_token_weight.to(emb.base.weight.dtype))
                                          ).detach().clone()
    if head is None:  # the logits come from the embedding matrix
        return out
    out[f"{head_name}.weight"] = torch.cat((head.base.weight[:base_v],
                                            head.new_token_weight.to(head.base.weight.dtype))).detach().clone()
    if head.new_token_bias is not None:
        out[f"{head_name}.bias"] = torch.cat((head.base.bias[:base_v], head.new_token_bias.to(head.base.bias.dtype))).detach().clone()
    return out


def load_openflamingo_checkpoint(model: nn.Module, checkpoint: dict | str | os.PathLike,
                                 strict: bool = True) -> LoadReport:
    """Load an OpenFlamingo state dict (or a path to `checkpoint.pt`, read with weights_only=True).

    Accepts training checkpoints holding `model_state_dict` and the key segments DDP (`module.`), FSDP,
    activation checkpointing and torch.compile add. Added-token rows the reference never saves (an untied
    head's; those of an embedding it froze and so dropped) are set by `reference_new_rows` and listed in
    `defaulted_keys`. Returns a report of loaded / missing (our trainable params left untouched) / unexpected
    keys; with `strict=True` any missing or unexpected key raises `ValueError` before anything is modified.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "model_state_dict" in checkpoint:
        checkpoint = checkpoint["model_state_dict"]
    checkpoint = {_WRAPPER_SEGMENTS.sub("", k.removeprefix("module.")): v for k, v in checkpoint.items()}

    emb_name, emb, head_name, head = _token_modules(model)
    ours = model.state_dict()
    report, target = LoadReport(), {}

    def put(our_key: str, value: torch.Tensor, ref_key: str) -> None:
        if tuple(ours[our_key].shape) != tuple(value.shape):
            raise ValueError(f"{ref_key}: shape {tuple(value.shape)} does not fit {our_key} {tuple(ours[our_key].shape)}")
        target[our_key] = value
        report.loaded_keys.append(our_key)

    def put_rows(module, prefix: str, ref_key: str, param: str, value: torch.Tensor) -> None:
        base = getattr(module.base, param)
        base_v, n_new = module.base_vocab_size, module.new_token_weight.shape[0]
        if value.shape[0] != base_v + n_new:
            raise ValueError(f"{ref_key}: {value.shape[0]} rows, expected {base_v} base + {n_new} added tokens")
        merged = base.detach().clone()
        merged[:base_v] = value[:base_v]
        put(f"{prefix}.base.{param}", merged, ref_key)
        put(f"{prefix}.new_token_{param}", value[base_v:], ref_key)

    for key, value in checkpoint.items():
        if key.startswith(_REF_ALIASES):
            continue  # the reference's second names for tensors also stored under lang_encoder.<layers>
        if key in (f"{emb_name}.weight", f"{head_name}.weight", f"{head_name}.bias"):
            module, prefix = (emb, emb_name) if key.startswith(emb_name + ".") else (head, head_name)
            put_rows(module, prefix, key, key.rsplit(".", 1)[1], value)
        elif key.startswith("perceiver.") and _perceiver_from_ref(key) in ours:
            put(_perceiver_from_ref(key), value, key)
        elif key.startswith("vision_encoder.") and "vision_encoder.visual." + key[15:] in ours:
            put("vision_encoder.visual." + key[15:], value, key)
        elif key in ours:
            put(key, value, key)
        else:
            report.unexpected_keys.append(key)
    for module, prefix in ((emb, emb_name), (head, head_name)):
        if module is None or (module is head and head.tied) or f"{prefix}.new_token_weight" in target:
            continue
        for param in ("weight", "bias"):
            if getattr(module, f"new_token_{param}", None) is not None:
                key = f"{prefix}.new_token_{param}"
                target[key] = reference_new_rows(getattr(module.base, param), module.base_vocab_size,
                                                 module.new_token_weight.shape[0])
                report.defaulted_keys.append(key)
    report.missing_keys = [n for n in _trainable_names(model) if n not in target]
    if strict and (report.missing_keys or report.unexpected_keys):
        raise ValueError(f"checkpoint does not match the model: missing {report.missing_keys}, "
                         f"unexpected {report.unexpected_keys}")
    result = model.load_state_dict(target, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return report
