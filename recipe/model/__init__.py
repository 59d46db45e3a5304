"""The Flamingo model: frozen open_clip vision tower, Perceiver resampler, gated cross-attention in a
frozen Hugging Face causal LM, trainable added-token embeddings."""

from recipe.model.builder import build_flamingo
from recipe.model.checkpoint import LoadReport, export_openflamingo_checkpoint, load_openflamingo_checkpoint
from recipe.model.flamingo import Flamingo

__all__ = ["Flamingo", "LoadReport", "build_flamingo", "export_openflamingo_checkpoint",
           "load_openflamingo_checkpoint"]
