"""Where a causal LM keeps what Flamingo needs, found from its traits: the token embedding, how the logits
are computed, the decoder-layer list, the width, and how generation caches keys and values.

transformers' own classes answer through their accessors. The remote-code LMs of the released OpenFlamingo
models do not: MosaicGPT (OpenFlamingo-3B) has neither `get_input_embeddings` nor an output module and
computes its logits as `F.linear(h, transformer.wte.weight)`; MPT-7B (OpenFlamingo-9B) returns its input
embedding as the output embedding and unembeds by calling it with `unembed=True`. Both configs name the width
`d_model`, and both keep their cache as per-layer tuples. A trait that cannot be found stops the build with
one line naming the `model.*` key that sets it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

# Config keys that hold the LM's width, in the order transformers' and remote-code configs use them.
_WIDTH_KEYS = ("hidden_size", "d_model", "n_embd", "dim")


@dataclass(frozen=True)
class LMLayout:
    """embedding: path of the token-embedding module. head: path of the output head, or None when the LM
    computes its logits from the embedding module (its `.weight`, or a call with `unembed=True`).
    decoder_layers: path of the decoder-layer ModuleList. legacy_cache: the LM's own code keeps its cache as
    per-layer tuples, so generation must let the LM build it (no transformers `Cache`)."""
    embedding: str
    head: str | None
    decoder_layers: str
    hidden_size: int
    legacy_cache: bool


def _accessor(fn) -> nn.Module | None:
    """An HF accessor's module, or None where the class has none (the defaults raise or return None)."""
    try:
        module = fn()
    except (NotImplementedError, AttributeError):
        return None
    return module if isinstance(module, nn.Module) else None


def _path_of(lm: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in lm.named_modules() if m is module)


def _get(lm: nn.Module, path: str, key: str) -> nn.Module:
    try:
        return lm.get_submodule(path)
    except AttributeError:
        raise ValueError(f"{key}: {type(lm).__name__} has no submodule {path!r}") from None


def find_decoder_layers(lm: nn.Module, attr: str | None = None) -> str:
    """Dotted path of the LM's decoder-layer ModuleList (e.g. `model.layers`, `transformer.blocks`).

    Without `attr`: the longest ModuleList of same-typed modules, preferring the LM's `_no_split_modules`
    classes (HF's own name for its decoder blocks)."""
    if attr is not None:
        layers = _get(lm, attr, "model.decoder_layers_attr")
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"model.decoder_layers_attr: {attr!r} of {type(lm).__name__} is a "
                             f"{type(layers).__name__}, not a ModuleList")
        return attr
    block_names = set(getattr(lm, "_no_split_modules", None) or ())
    best, best_key = None, None
    for name, module in lm.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0 or len({type(m) for m in module}) != 1:
            continue
        key = (type(module[0]).__name__ in block_names, len(module), -name.count("."))
        if best_key is None or key > best_key:
            best, best_key = name, key
    if best is None:
        raise ValueError(f"no decoder-layer ModuleList found in {type(lm).__name__}; set model.decoder_layers_attr")
    return best


def _outside(lm: nn.Module, layers_path: str, cls: type) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in lm.named_modules()
            if isinstance(m, cls) and not name.startswith(layers_path + ".")]


def _embedding(lm: nn.Module, layers: str, base_vocab_size: int, attr: str | None) -> str:
    if attr is not None:
        if not hasattr(_get(lm, attr, "model.embeddings_attr"), "weight"):
            raise ValueError(f"model.embeddings_attr: {attr!r} of {type(lm).__name__} has no weight")
        return attr
    module = _accessor(lm.get_input_embeddings)
    if module is not None:
        return _path_of(lm, module)
    tables = [name for name, m in _outside(lm, layers, nn.Embedding) if m.num_embeddings >= base_vocab_size]
    if len(tables) != 1:
        found = f"candidates {tables}" if tables else "no embedding table with a row per token"
        raise ValueError(f"{type(lm).__name__} has no get_input_embeddings() and {found}; "
                         "set model.embeddings_attr to its token embedding")
    return tables[0]


def _head(lm: nn.Module, layers: str, embedding: str, base_vocab_size: int, attr: str | None) -> str | None:
    if attr == "embedding":
        return None
    if attr is not None:
        if not isinstance(_get(lm, attr, "model.lm_head_attr"), nn.Linear):
            raise ValueError(f"model.lm_head_attr: {attr!r} of {type(lm).__name__} is not an nn.Linear")
        return attr
    emb = lm.get_submodule(embedding)
    module = _accessor(lm.get_output_embeddings)
    if module is emb:
        return None  # one shared module embeds and unembeds (MPT's SharedEmbedding)
    if isinstance(module, nn.Linear):
        return _path_of(lm, module)
    heads = [name for name, m in _outside(lm, layers, nn.Linear) if m.out_features >= base_vocab_size]
    if len(heads) == 1:
        return heads[0]
    if heads or module is not None or getattr(lm.config, "tie_word_embeddings", True) is False:
        raise ValueError(f"cannot tell how {type(lm).__name__} computes its logits (output embeddings: "
                         f"{type(module).__name__}, candidate heads {heads}); set model.lm_head_attr to the "
                         "output head, or to 'embedding' if the logits come from the input embedding matrix")
    return None  # no output module: the logits come from the embedding matrix (MosaicGPT)


def _hidden_size(lm: nn.Module, embedding: str) -> int:
    for key in _WIDTH_KEYS:
        value = getattr(lm.config, key, None)
        if isinstance(value, int):
            return value
    return lm.get_submodule(embedding).weight.shape[1]


def _legacy_cache(lm: nn.Module) -> bool:
    """Remote code whose forward takes no `cache_position` predates transformers' `Cache` objects."""
    remote = type(lm).__module__.startswith("transformers_modules")
    return remote and "cache_position" not in inspect.signature(lm.forward).parameters


def describe_lm(lm: nn.Module, base_vocab_size: int, decoder_layers_attr: str | None = None,
                embeddings_attr: str | None = None, lm_head_attr: str | None = None) -> LMLayout:
    """The `LMLayout` of a freshly loaded LM whose tokenizer has `base_vocab_size` tokens. The `*_attr`
    arguments (config keys of the same names) override what is found."""
    layers = find_decoder_layers(lm, decoder_layers_attr)
    embedding = _embedding(lm, layers, base_vocab_size, embeddings_attr)
    return LMLayout(embedding=embedding, head=_head(lm, layers, embedding, base_vocab_size, lm_head_attr),
                    decoder_layers=layers, hidden_size=_hidden_size(lm, embedding), legacy_cache=_legacy_cache(lm))


def let_lm_build_its_cache(lm: nn.Module) -> None:
    """transformers 4.57's `generate` hands every LM a `DynamicCache`, built from `num_hidden_layers` (which
    MosaicGPT / MPT configs lack) and unreadable by code that indexes per-layer tuples. Answering "no default
    cache" on this instance only lets the LM build and return its own cache, as it did when it was written."""
    lm._supports_default_dynamic_cache = lambda: False
