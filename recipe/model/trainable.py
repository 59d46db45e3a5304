"""Which parameters train: one function sets `requires_grad` over the named parts of a `Flamingo`.

Parts (every parameter belongs to exactly one; a tied matrix counts once):
- `vision_stem`: patch embedding, class / position embeddings, pre/post norms, projection (always frozen);
- `vision_blocks`: the ViT residual blocks (the last `vision_last_n_blocks` may train);
- `perceiver`, `cross_attn`: the Flamingo additions (the reference trains both);
- `new_embeddings`: the added-token rows (`<image>`, `<|endofchunk|>`, `<PAD>`);
- `lm_embeddings`: the LM's own input embedding, output head and any other embedding table outside the layers;
- `lm_layers`: the original decoder layers (the last `lm_last_n_layers` may train; -1 = all);
- `lm_norms`: the rest of the LM outside its layers (final norm). Norms inside a decoder layer train with it.

Each FSDP unit of `Flamingo.fsdp_wrap_fn` is a whole block or layer, so it stays uniformly frozen or trainable;
the embeddings and final norms live in the root unit, which may mix (FSDP allows it with use_orig_params=True).
"""

from __future__ import annotations

from torch import nn

from recipe.model.embeddings import token_modules

PARTS = ("vision_stem", "vision_blocks", "perceiver", "cross_attn", "new_embeddings", "lm_embeddings",
         "lm_layers", "lm_norms")


def _params(modules) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def _last(items: list, n: int) -> list:
    """The last n items; n = -1 means all of them."""
    if n < -1:
        raise ValueError(f"expected a count >= 0 or -1 (all), got {n}")
    if n > len(items):
        raise ValueError(f"asked for the last {n} of only {len(items)} blocks")
    return list(items) if n == -1 else list(items[len(items) - n:]) if n else []


def partition(flamingo: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Part name -> its parameters (each parameter in exactly one part)."""
    lm = flamingo.lang_encoder
    _, emb, _, head = token_modules(lm)
    heads = [] if head is None else [head]  # none when the logits come from the embedding matrix
    parts: dict[str, list[nn.Parameter]] = {
        "vision_blocks": _params(flamingo.vision_encoder.resblocks),
        "perceiver": list(flamingo.perceiver.parameters()),
        "cross_attn": _params(flamingo.cross_attn_blocks),
        "new_embeddings": [p for m in (emb, *heads) for p in (m.new_token_weight, getattr(m, "new_token_bias", None))
                           if p is not None],
        "lm_layers": _params(flamingo.decoder_layers),
        "lm_embeddings": [p for m in (emb, *heads) for p in m.base.parameters()],
    }
    seen = {id(p) for ps in parts.values() for p in ps}
    parts["vision_stem"] = [p for p in flamingo.vision_encoder.parameters() if id(p) not in seen]
    seen.update(id(p) for p in parts["vision_stem"])
    other_tables = [p for m in lm.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
                    if id(p) not in seen]  # e.g. GPT-2's learned positions
    parts["lm_embeddings"] += other_tables
    seen.update(id(p) for p in other_tables)
    parts["lm_norms"] = [p for p in lm.parameters() if id(p) not in seen]
    out = {}
    for name in PARTS:  # dedupe tied parameters (the tied new-token rows, a tied LM head)
        unique, ids = [], set()
        for p in parts[name]:
            if id(p) not in ids:
                ids.add(id(p))
                unique.append(p)
        out[name] = unique
    return out


def set_trainable(flamingo: nn.Module, *, perceiver: bool = True, cross_attn: bool = True,
                  new_embeddings: bool = True, lm_embeddings: bool = False, lm_last_n_layers: int = 0,
                  lm_norms: bool = False, vision_last_n_blocks: int = 0) -> dict[str, tuple[int, int]]:
    """Set `requires_grad` on every parameter of `flamingo`; the defaults are the reference's choice.

    `lm_last_n_layers` / `vision_last_n_blocks`: how many of the last decoder layers / vision blocks train
    (0 none, -1 all). Returns part name -> (trainable, total) parameter counts."""
    parts = partition(flamingo)
    for p in flamingo.parameters():
        p.requires_grad_(False)
    chosen = [p for name, on in (("perceiver", perceiver), ("cross_attn", cross_attn),
                                 ("new_embeddings", new_embeddings), ("lm_embeddings", lm_embeddings),
                                 ("lm_norms", lm_norms)) if on for p in parts[name]]
    chosen += _params(_last(flamingo.decoder_layers, lm_last_n_layers))
    chosen += _params(_last(flamingo.vision_encoder.resblocks, vision_last_n_blocks))
    for p in chosen:
        p.requires_grad_(True)
    return trainable_counts(flamingo, parts)


def trainable_counts(flamingo: nn.Module, parts: dict | None = None) -> dict[str, tuple[int, int]]:
    parts = parts or partition(flamingo)
    return {name: (sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps))
            for name, ps in parts.items()}


def format_counts(counts: dict[str, tuple[int, int]]) -> str:
    """A small table for the startup log."""
    lines = [f"{'part':<16}{'trainable':>14}{'total':>14}"]
    lines += [f"{name:<16}{t:>14,}{n:>14,}" for name, (t, n) in counts.items()]
    t_all, n_all = sum(t for t, _ in counts.values()), sum(n for _, n in counts.values())
    lines.append(f"{'all':<16}{t_all:>14,}{n_all:>14,}")
    return "\n".join(lines)
