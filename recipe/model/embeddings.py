"""Trainable rows for the added special tokens, next to the LM's frozen embedding and output head.

The LM's input embedding and output head are replaced by modules that own the original (frozen)
module plus a small parameter for the ids >= `base_vocab_size`, so training `<image>` / `<|endofchunk|>`
never needs a gradient (or optimizer state) over the full vocabulary. Tied LMs tie the new rows too
(one Parameter used by both modules, as HF ties the original matrix); untied LMs get separate trainable
output rows. An LM with no output module (`LMLayout.head` is None) gets its logits from the embedding
module itself, over the base and added rows. New rows start at the mean of the existing rows (input and,
when untied, output) and are kept in float32 whatever the LM's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recipe.model.lm_adapters import LMLayout


def _mean_rows(weight: torch.Tensor, base_vocab_size: int, num_new: int) -> nn.Parameter:
    mean = weight[:base_vocab_size].detach().float().mean(dim=0)
    return nn.Parameter(mean.expand(num_new, -1).clone())  # float32 even under a low-precision LM


class AddedTokenEmbedding(nn.Module):
    """Input embedding: ids < base_vocab_size -> the original embedding, ids >= it -> `new_token_weight`."""

    def __init__(self, base: nn.Embedding, base_vocab_size: int, num_new_tokens: int):
        super().__init__()
        if base.num_embeddings < base_vocab_size:
            raise ValueError(f"embedding has {base.num_embeddings} rows < base vocab {base_vocab_size}")
        self.base = base
        self.base_vocab_size = base_vocab_size
        self.new_token_weight = _mean_rows(base.weight, base_vocab_size, num_new_tokens)

    @property
    def weight(self) -> torch.Tensor:
        """The matrix over the base and added ids, as an LM that computes its logits as
        `F.linear(h, embedding.weight)` (MosaicGPT) reads it; gradients reach the rows that train."""
        return torch.cat((self.base.weight[: self.base_vocab_size], self.new_token_weight.to(self.base.weight.dtype)))

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    @property
    def num_embeddings(self) -> int:
        return self.base_vocab_size + self.new_token_weight.shape[0]

    def forward(self, input_ids: torch.Tensor, unembed: bool = False) -> torch.Tensor:
        """Embed ids; with `unembed`, turn hidden states into logits (MPT's shared embedding is called so)."""
        if unembed:
            return _added_token_logits(input_ids, F.linear(input_ids, self.base.weight), self.base_vocab_size,
                                       self.new_token_weight)
        is_new = input_ids >= self.base_vocab_size
        out = self.base(input_ids.masked_fill(is_new, 0))
        new = F.embedding((input_ids - self.base_vocab_size).clamp(min=0), self.new_token_weight)
        return torch.where(is_new.unsqueeze(-1), new.to(out.dtype), out)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose incoming gradient is made contiguous."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class AddedTokenHead(nn.Module):
    """Output head: logits over base_vocab_size + num_new ids; the original head's rows beyond the base
    vocab (padding rows, e.g. MPT's 50432) are dropped."""

    def __init__(self, base: nn.Linear, base_vocab_size: int, num_new_tokens: int,
                 tied_weight: nn.Parameter | None = None):
        super().__init__()
        self.base = base
        self.base_vocab_size = base_vocab_size
        self.tied = tied_weight is not None
        self.new_token_weight = tied_weight if self.tied else _mean_rows(base.weight, base_vocab_size, num_new_tokens)
        self.new_token_bias = None
        if base.bias is not None:
            mean = base.bias[:base_vocab_size].detach().float().mean()
            self.new_token_bias = nn.Parameter(mean.expand(num_new_tokens).clone())

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return _added_token_logits(hidden_states, self.base(hidden_states), self.base_vocab_size,
                                   self.new_token_weight, self.new_token_bias)


def _added_token_logits(hidden_states: torch.Tensor, base_logits: torch.Tensor, base_vocab_size: int,
                        new_weight: torch.Tensor, new_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Base logits without the original's padding rows (e.g. MPT's 50432), then the added tokens' logits."""
    # The gradient of the base logits is a column slice of the concatenated logits' gradient; with an odd
    # total width (e.g. 32000 + 3) cuBLAS ran the head's input-gradient product in a slow unaligned
    # kernel (H200, 8192 tokens: 12 ms, ~2.5 ms by its FLOPs). A contiguous copy costs well under 1 ms.
    logits = _ContiguousGrad.apply(base_logits[..., :base_vocab_size])
    bias = None if new_bias is None else new_bias.to(logits.dtype)
    new = F.linear(hidden_states.to(logits.dtype), new_weight.to(logits.dtype), bias)
    return torch.cat((logits, new), dim=-1)


def add_token_embeddings(lm: nn.Module, layout: LMLayout, base_vocab_size: int, num_new_tokens: int,
                         freeze: bool = False) -> tuple[AddedTokenEmbedding, AddedTokenHead | None]:
    """Install `AddedTokenEmbedding` (and `AddedTokenHead`, when the LM has an output module) in place, at
    the paths `layout` names."""
    emb = lm.get_submodule(layout.embedding)
    new_emb = AddedTokenEmbedding(emb, base_vocab_size, num_new_tokens)
    lm.set_submodule(layout.embedding, new_emb)
    new_head = None
    if layout.head is not None:
        head = lm.get_submodule(layout.head)
        tied = head.weight is emb.weight
        new_head = AddedTokenHead(head, base_vocab_size, num_new_tokens,
                                  tied_weight=new_emb.new_token_weight if tied else None)
        lm.set_submodule(layout.head, new_head)
    lm.config.vocab_size = base_vocab_size + num_new_tokens
    for p in (new_emb.new_token_weight, *(() if new_head is None else (new_head.new_token_weight,
                                                                        new_head.new_token_bias))):
        if p is not None:
            p.requires_grad_(not freeze)
    return new_emb, new_head


def token_modules(lm: nn.Module) -> tuple[str, AddedTokenEmbedding, str | None, AddedTokenHead | None]:
    """(path, module) of the installed added-token embedding and head (None, None when the logits come from
    the embedding); paths relative to `lm`."""
    found = {AddedTokenEmbedding: (None, None), AddedTokenHead: (None, None)}
    for name, module in lm.named_modules():
        if type(module) in found:
            found[type(module)] = (name, module)
    emb_name, emb = found[AddedTokenEmbedding]
    if emb is None:
        raise ValueError("the LM has no added-token embedding (build the model with build_flamingo)")
    return (emb_name, emb, *found[AddedTokenHead])
