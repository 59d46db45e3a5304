"""Every supported LM family builds, trains (forward/backward) and generates (greedy, beam)."""

import pytest
import torch

import stand_ins
from model_helpers import randomize_trainable
from recipe.offline.assets import LM_FAMILIES

EXPECTED_LAYERS = {"llama": "model.layers", "mistral": "model.layers", "qwen2": "model.layers",
                   "mpt": "transformer.blocks", "gpt_neox": "gpt_neox.layers", "opt": "model.decoder.layers",
                   "gpt2": "transformer.h", "gptj": "transformer.h",
                   "mosaic_gpt": "transformer.blocks", "mpt_remote": "transformer.blocks"}


@pytest.mark.parametrize("family", [*LM_FAMILIES, *stand_ins.REMOTE_LMS])
def test_family_forward_backward_generate(build, family):
    model, tok = build(family)
    assert model.decoder_layers_attr == EXPECTED_LAYERS[family]
    assert len(model.cross_attn_blocks) == len(model.decoder_layers) == 4
    randomize_trainable(model, std=0.5)

    tok.padding_side = "right"
    enc = tok(["<image>a photo of the red circle<|endofchunk|>", "text first <image>blue<|endofchunk|><image>x"],
              return_tensors="pt", padding=True)
    images = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    num_images = torch.tensor([1, 2])
    model.train()
    out = model(images, enc.input_ids, enc.attention_mask, num_images=num_images)
    assert out.logits.shape == (*enc.input_ids.shape, len(tok))
    out.logits.logsumexp(-1).mean().backward()
    assert model.perceiver.latents.grad is not None
    assert all(b.attn.to_q.weight.grad is not None for b in model.cross_attn_blocks)
    model.eval()

    tok.padding_side = "left"
    prompts = ["<image>a photo of", "red <image>blue square<|endofchunk|><image>the"]
    enc = tok(prompts, return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=6, pad_token_id=tok.pad_token_id, bad_words_ids=[[model.media_token_id]])
    greedy = model.generate(images, enc.input_ids, enc.attention_mask, num_images=num_images, do_sample=False, **kw)
    beam = model.generate(images, enc.input_ids, enc.attention_mask, num_images=num_images, num_beams=3, **kw)
    for gen in (greedy, beam):
        assert gen.shape[0] == 2 and gen.shape[1] > enc.input_ids.shape[1]
        assert torch.equal(gen[:, :enc.input_ids.shape[1]], enc.input_ids)
    assert model.conditioning.latents is None

    # Cached greedy decoding equals greedy decoding by full forwards without a cache: every new token
    # attends to the prompt's last image either way. One prompt per call (no padding involved).
    for row, prompt in enumerate(prompts):
        ids = tok(prompt, return_tensors="pt").input_ids
        n = int(num_images[row])
        cached = model.generate(images[row:row + 1, :n], ids, torch.ones_like(ids), do_sample=False, **kw)
        seq = ids
        with torch.no_grad():
            for _ in range(cached.shape[1] - ids.shape[1]):
                logits = model(images[row:row + 1, :n], seq).logits[0, -1]
                logits[model.media_token_id] = -float("inf")
                seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
                if seq[0, -1] == model.eoc_token_id:
                    break
        assert torch.equal(cached[0, :seq.shape[1]], seq[0])


def test_traits_can_be_named_and_a_missing_one_is_one_line(build, lm_dir_factory):
    """The config keys override what the builder reads off the LM; a trait it cannot read names its key."""
    from transformers import AutoModelForCausalLM

    from recipe.model.lm_adapters import describe_lm

    auto, tok = build("mosaic_gpt")
    assert (auto.lm_layout.embedding, auto.lm_layout.head, auto.lm_layout.hidden_size) == ("transformer.wte", None, 64)
    assert auto.lm_layout.legacy_cache and not build("llama")[0].lm_layout.legacy_cache
    named, _ = build("mosaic_gpt", decoder_layers_attr="transformer.blocks", embeddings_attr="transformer.wte",
                     lm_head_attr="embedding")
    assert named.lm_layout == auto.lm_layout

    lm = AutoModelForCausalLM.from_pretrained(lm_dir_factory("mosaic_gpt"), trust_remote_code=True)
    base_vocab = len(tok) - 3
    lm.transformer.wpe = torch.nn.Embedding(lm.transformer.wte.num_embeddings, 64)  # a second vocabulary-sized table
    with pytest.raises(ValueError, match=r"^MosaicGPT has no get_input_embeddings\(\) .* set model.embeddings_attr"):
        describe_lm(lm, base_vocab)
    assert describe_lm(lm, base_vocab, embeddings_attr="transformer.wte").embedding == "transformer.wte"
    lm.config.tie_word_embeddings = False  # untied, yet no output module to be found
    with pytest.raises(ValueError, match="set model.lm_head_attr"):
        describe_lm(lm, base_vocab, embeddings_attr="transformer.wte")
    with pytest.raises(ValueError, match="model.lm_head_attr: 'transformer.ln_f' .* not an nn.Linear"):
        describe_lm(lm, base_vocab, embeddings_attr="transformer.wte", lm_head_attr="transformer.ln_f")


def test_embedding_matrix_logits_train_the_added_rows(build):
    """MosaicGPT reads `wte.weight` for its logits: the added tokens get logits and their rows gradients."""
    model, tok = build("mosaic_gpt")
    randomize_trainable(model)
    ids = tok(["<image>red circle<|endofchunk|>"], return_tensors="pt").input_ids
    logits = model(torch.randn(1, 1, 3, 32, 32), ids).logits
    assert logits.shape[-1] == len(tok)
    logits[..., model.eoc_token_id].sum().backward()
    emb = model.lang_encoder.transformer.wte
    assert emb.new_token_weight.grad is not None and emb.new_token_weight.grad.abs().sum() > 0
    assert emb.base.weight.grad is None  # the frozen base matrix gets none
