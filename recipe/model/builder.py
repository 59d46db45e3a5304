"""`build_flamingo`: the factory train.py calls with flat, typed arguments from YAML."""

from __future__ import annotations

import torch

from recipe.model.embeddings import add_token_embeddings
from recipe.model.flamingo import Flamingo
from recipe.model.lm_adapters import describe_lm, let_lm_build_its_cache
from recipe.model.vision import VisionEncoder, load_open_clip_visual
from recipe.tokens import END_OF_CHUNK, IMAGE, PAD


def add_special_tokens(tokenizer) -> int:
    """Add `<|endofchunk|>`, `<image>` (and `<PAD>` if there is no pad token), in that order, as the
    reference does. Returns the base vocabulary size (the first id an added token can get)."""
    base_vocab_size = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK, IMAGE]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD})
    return base_vocab_size


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use e.g. 'float32', 'bfloat16')")
    return resolved


def _load_lm(lm_path: str, attn_implementation: str | None, dtype: torch.dtype | None, trust_remote_code: bool,
             random_init: bool = False):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(lm_path, trust_remote_code=trust_remote_code)
    if attn_implementation == "sdpa":
        # MPT and GPT-J have no SDPA path in transformers; they run their eager attention. Remote code (not in
        # transformers' mapping) runs the attention its own config chooses.
        model_cls = AutoModelForCausalLM._model_mapping.get(type(config), None)
        if model_cls is None:
            attn_implementation = None
        elif not getattr(model_cls, "_supports_sdpa", False):
            attn_implementation = "eager"
    if random_init:
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code,
                                                attn_implementation=attn_implementation, torch_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(lm_path, config=config, trust_remote_code=trust_remote_code,
                                                attn_implementation=attn_implementation, torch_dtype=dtype)


def build_flamingo(vision_name: str, vision_pretrained: str | None = None, lm_path: str | None = None,
                   tokenizer_path: str | None = None, cross_attn_every_n_layers: int = 1,
                   decoder_layers_attr: str | None = None, embeddings_attr: str | None = None,
                   lm_head_attr: str | None = None, freeze_new_embeddings: bool = False,
                   lm_attn_implementation: str | None = "sdpa", vision_final_ln: bool = False,
                   lm_dtype: str | torch.dtype | None = None, trust_remote_code: bool = False,
                   lm_random_init: bool = False, perceiver_kwargs: dict | None = None,
                   cross_attn_kwargs: dict | None = None):
    """Build (model, tokenizer, image_transform).

    vision_name / vision_pretrained: open_clip model name (or one registered with
    `open_clip.add_model_config`) and pretrained tag (None = random init). lm_path / tokenizer_path: HF
    causal LM and its tokenizer (tokenizer_path defaults to lm_path). lm_attn_implementation: 'sdpa'
    falls back to 'eager' for LMs without an SDPA path. lm_dtype: dtype of the frozen LM weights (None =
    as saved; the trainable parts stay float32). lm_random_init: random weights from the LM's config alone
    (benchmarks; `lm_path` then needs only `config.json`). image_transform is open_clip's validation transform.
    decoder_layers_attr / embeddings_attr / lm_head_attr: where the LM keeps its decoder layers, token
    embedding and output head (`lm_head_attr='embedding'`: logits from the embedding matrix), for LMs whose
    traits `lm_adapters.describe_lm` cannot read.

    Only the Perceiver, the gated cross-attention blocks and (unless `freeze_new_embeddings`) the
    added-token rows are trainable; `recipe.model.trainable.set_trainable` changes that choice.
    """
    if not lm_path:
        raise ValueError("build_flamingo needs lm_path")
    from transformers import AutoTokenizer

    visual, image_transform, _ = load_open_clip_visual(vision_name, vision_pretrained)
    vision = VisionEncoder(visual, final_ln=vision_final_ln)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or lm_path, trust_remote_code=trust_remote_code)
    base_vocab_size = add_special_tokens(tokenizer)
    lm = _load_lm(lm_path, lm_attn_implementation, _resolve_dtype(lm_dtype), trust_remote_code, lm_random_init)
    layout = describe_lm(lm, base_vocab_size, decoder_layers_attr, embeddings_attr, lm_head_attr)
    rows = lm.get_submodule(layout.embedding).weight.shape[0]
    if rows < base_vocab_size:
        raise ValueError(f"tokenizer has {base_vocab_size} tokens but the LM embedding only {rows} rows")
    lm.requires_grad_(False)
    add_token_embeddings(lm, layout, base_vocab_size, len(tokenizer) - base_vocab_size, freeze=freeze_new_embeddings)
    if layout.legacy_cache:
        let_lm_build_its_cache(lm)
    if lm.generation_config is not None:
        lm.generation_config.pad_token_id = tokenizer.pad_token_id

    model = Flamingo(vision, lm, media_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
                     eoc_token_id=tokenizer.convert_tokens_to_ids(END_OF_CHUNK), lm_layout=layout,
                     cross_attn_every_n_layers=cross_attn_every_n_layers,
                     perceiver_kwargs=perceiver_kwargs, cross_attn_kwargs=cross_attn_kwargs)
    return model, tokenizer, image_transform
