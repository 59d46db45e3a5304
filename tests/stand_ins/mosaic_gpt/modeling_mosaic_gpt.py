"""Stand-in for MosaicGPT (`anas-awadalla/mpt-1b-redpajama-200b`), with the traits a Flamingo wrapper meets:
- weights in `transformer.wte` / `transformer.wpe` / `transformer.blocks` / `transformer.ln_f` (a ModuleDict);
- no `get_input_embeddings` / `get_output_embeddings` of its own (transformers' defaults fail on it);
- no output module: logits are `F.linear(x, self.transformer.wte.weight)`;
- learned positions shifted by left padding; training refuses left padding, generation right padding;
- a legacy per-layer tuple cache, and a loss when `labels` are given.
Written for these tests."""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .blocks import (Block, attention_bias, check_cache, init_weights, lm_loss, padded_mask,
                     prepare_inputs_for_generation, reorder_cache, run_blocks)
from .configuration_mosaic_gpt import MosaicGPTConfig


class MosaicGPT(PreTrainedModel):
    config_class = MosaicGPTConfig
    base_model_prefix = "transformer"

    def __init__(self, config: MosaicGPTConfig):
        super().__init__(config)
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.d_model),
            "wpe": nn.Embedding(config.max_seq_len, config.d_model),
            "blocks": nn.ModuleList(Block(config.d_model, config.n_heads, config.mlp_ratio)
                                    for _ in range(config.n_layers)),
            "ln_f": nn.LayerNorm(config.d_model),
        })
        self.post_init()

    def _init_weights(self, module):
        init_weights(module, self.config.init_std)

    def forward(self, input_ids, past_key_values=None, attention_mask=None, labels=None, return_dict=None,
                output_attentions=None, output_hidden_states=None, use_cache=None):
        if attention_mask is not None and self.training and not attention_mask.bool()[:, 0].all():
            raise NotImplementedError("MosaicGPT does not support training with left padding.")
        past = check_cache(past_key_values, self.config.n_layers)
        batch, length = input_ids.shape
        mask = padded_mask(attention_mask, batch, past + length, input_ids.device)
        pos = torch.arange(past, past + length, device=input_ids.device).unsqueeze(0)
        pos = (pos - torch.cumsum(~mask, dim=1)[:, past:]).clamp(min=0)
        x = self.transformer.wte(input_ids) + self.transformer.wpe(pos)
        bias = attention_bias(mask, length, x.dtype)
        x, past_key_values = run_blocks(self.transformer.blocks, x, past_key_values, bias, mask, use_cache)
        x = self.transformer.ln_f(x)
        logits = F.linear(x, self.transformer.wte.weight)  # tied: the input matrix is the output head
        return CausalLMOutputWithPast(loss=lm_loss(logits, labels), logits=logits,
                                      past_key_values=past_key_values if use_cache else None)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, inputs_embeds=None, **kwargs):
        return prepare_inputs_for_generation(input_ids, past_key_values, kwargs, "MosaicGPT")

    @staticmethod
    def _reorder_cache(past_key_values, beam_idx):
        return reorder_cache(past_key_values, beam_idx)
