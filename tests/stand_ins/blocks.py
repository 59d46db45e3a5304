"""Pieces shared by the two stand-in remote-code LMs (`mosaic_gpt/`, `mpt/`), written for these tests.

They reproduce the traits of the 2023 MosaicML code behind the released OpenFlamingo models that matter to
a wrapper, not their internals: pre-norm blocks called with keyword arguments, a key/value cache kept as one
`(keys, values)` tuple of `(batch, seq, d_model)` tensors per layer in a plain list, an additive attention
bias built by the model (causal, key padding, optionally ALiBi), and the loss computed in `forward`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig


class StandInConfig(PretrainedConfig):
    """The size keys both originals share, under their names (no `hidden_size`, no `num_hidden_layers`)."""

    def __init__(self, d_model=64, n_heads=4, n_layers=4, max_seq_len=128, vocab_size=512, init_std=0.02, **kwargs):
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.max_seq_len, self.vocab_size, self.init_std = max_seq_len, vocab_size, init_std
        super().__init__(**kwargs)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.Wqkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x, past_key_value=None, attn_bias=None):
        q, k, v = self.Wqkv(x).chunk(3, dim=-1)
        if past_key_value:
            k = torch.cat([past_key_value[0], k], dim=1)
            v = torch.cat([past_key_value[1], v], dim=1)
        b, s, d = q.shape
        dh = d // self.n_heads

        def heads(t):
            return t.view(b, t.shape[1], self.n_heads, dh).transpose(1, 2)

        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(dh) + attn_bias
        out = (scores.softmax(dim=-1) @ heads(v)).transpose(1, 2).reshape(b, s, d)
        return self.out_proj(out), (k, v)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, x, past_key_value=None, attn_bias=None, attention_mask=None, is_causal=True):
        a, past_key_value = self.attn(self.ln_1(x), past_key_value=past_key_value, attn_bias=attn_bias)
        x = x + a
        return x + self.mlp(self.ln_2(x)), past_key_value


def attention_bias(attention_mask, query_len: int, dtype, alibi_heads: int = 0):
    """(batch, heads or 1, query_len, key_len) additive bias; the queries are the mask's last positions."""
    batch, key_len = attention_mask.shape
    device = attention_mask.device
    q_pos = torch.arange(key_len - query_len, key_len, device=device).unsqueeze(1)
    k_pos = torch.arange(key_len, device=device).unsqueeze(0)
    allowed = (k_pos <= q_pos).unsqueeze(0) & attention_mask[:, None, :]
    bias = torch.zeros(batch, 1, query_len, key_len, dtype=dtype, device=device)
    bias = bias.masked_fill(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    if alibi_heads:
        slopes = 2.0 ** (-8.0 * torch.arange(1, alibi_heads + 1, device=device) / alibi_heads)
        bias = bias + (slopes.view(1, -1, 1, 1) * (k_pos - q_pos).clamp(max=0)).to(dtype)
    return bias


def padded_mask(attention_mask, batch: int, key_len: int, device):
    if attention_mask is None:
        return torch.ones(batch, key_len, dtype=torch.bool, device=device)
    return attention_mask.bool()


def check_cache(past_key_values, n_layers: int) -> int:
    """Length of the cached prefix; like the originals, a cache must hold one entry per layer."""
    if past_key_values is None:
        return 0
    if len(past_key_values) != n_layers:
        raise ValueError(f"past_key_values must provide a past_key_value for each of the {n_layers} layers "
                         f"(got {len(past_key_values)})")
    return past_key_values[0][0].size(1)


def run_blocks(blocks, x, past_key_values, attn_bias, attention_mask, use_cache):
    if use_cache and past_key_values is None:
        past_key_values = [() for _ in blocks]
    for i, block in enumerate(blocks):
        layer_past = past_key_values[i] if past_key_values is not None else None
        x, layer_past = block(x, past_key_value=layer_past, attn_bias=attn_bias, attention_mask=attention_mask,
                              is_causal=True)
        if past_key_values is not None:
            past_key_values[i] = layer_past
    return x, past_key_values


def lm_loss(logits, labels):
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1))


def prepare_inputs_for_generation(input_ids, past_key_values, kwargs, name: str):
    """Left padding only (both originals raise on right padding); the cached steps feed the last token."""
    attention_mask = kwargs["attention_mask"].bool()
    if attention_mask[:, -1].sum() != attention_mask.shape[0]:
        raise NotImplementedError(f"{name} does not support generation with right padding.")
    if past_key_values is not None:
        input_ids = input_ids[:, -1].unsqueeze(-1)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": past_key_values,
            "use_cache": kwargs.get("use_cache", True)}


def reorder_cache(past_key_values, beam_idx):
    return [tuple(t.index_select(0, beam_idx) for t in layer) for layer in past_key_values]


def init_weights(module, std: float):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, std)
        if getattr(module, "bias", None) is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
