"""The pre-LayerNorm GELU MLP used by the Perceiver and the gated cross-attention blocks."""

from torch import nn


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    """LayerNorm -> Linear(dim, mult*dim) -> GELU -> Linear(mult*dim, dim), no biases.

    A `Sequential` so parameter names are `0.*` (norm), `1.*`, `3.*`, as in OpenFlamingo checkpoints.
    """
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )
