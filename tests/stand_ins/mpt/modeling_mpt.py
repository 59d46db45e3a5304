"""Stand-in for the MPT remote code of `anas-awadalla/mpt-7b`, with the traits a Flamingo wrapper meets:
- `MPTForCausalLM.transformer` is an `MPTModel` holding `wte` / `blocks` / `norm_f`;
- one shared embedding module that also unembeds: logits are `self.transformer.wte(hidden, True)`, and
  `get_output_embeddings()` returns that same module;
- ALiBi positions, training refuses left padding, generation right padding;
- a legacy per-layer tuple cache, and a loss when `labels` are given.
Written for these tests."""

import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .blocks import (Block, attention_bias, check_cache, init_weights, lm_loss, padded_mask,
                     prepare_inputs_for_generation, reorder_cache, run_blocks)
from .configuration_mpt import MPTConfig


class SharedEmbedding(nn.Embedding):
    def forward(self, input, unembed: bool = False):
        if unembed:
            return F.linear(input, self.weight)
        return super().forward(input)


class MPTPreTrainedModel(PreTrainedModel):
    config_class = MPTConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]

    def _init_weights(self, module):
        init_weights(module, self.config.init_std)


class MPTModel(MPTPreTrainedModel):
    def __init__(self, config: MPTConfig):
        super().__init__(config)
        self.wte = SharedEmbedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config.d_model, config.n_heads, config.expansion_ratio)
                                    for _ in range(config.n_layers))
        self.norm_f = nn.LayerNorm(config.d_model)
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(self, input_ids, past_key_values=None, attention_mask=None, use_cache=None):
        if attention_mask is not None and self.training and not attention_mask.bool()[:, 0].all():
            raise NotImplementedError("MPT does not support training with left padding.")
        past = check_cache(past_key_values, self.config.n_layers)
        batch, length = input_ids.shape
        mask = padded_mask(attention_mask, batch, past + length, input_ids.device)
        x = self.wte(input_ids)
        bias = attention_bias(mask, length, x.dtype, alibi_heads=self.config.n_heads)
        x, past_key_values = run_blocks(self.blocks, x, past_key_values, bias, mask, use_cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm_f(x),
                                       past_key_values=past_key_values if use_cache else None)


class MPTForCausalLM(MPTPreTrainedModel):
    def __init__(self, config: MPTConfig):
        super().__init__(config)
        self.transformer = MPTModel(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.transformer.wte

    def set_output_embeddings(self, new_embeddings):
        self.transformer.wte = new_embeddings

    def forward(self, input_ids, past_key_values=None, attention_mask=None, labels=None, return_dict=None,
                output_attentions=None, output_hidden_states=None, use_cache=None, inputs_embeds=None):
        out = self.transformer(input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                               use_cache=use_cache)
        logits = self.transformer.wte(out.last_hidden_state, True)
        return CausalLMOutputWithPast(loss=lm_loss(logits, labels), logits=logits,
                                      past_key_values=out.past_key_values)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, inputs_embeds=None, **kwargs):
        return prepare_inputs_for_generation(input_ids, past_key_values, kwargs, "MPT")

    @staticmethod
    def _reorder_cache(past_key_values, beam_idx):
        return reorder_cache(past_key_values, beam_idx)
