"""Every supported LM family builds, trains (forward/backward) and generates (greedy, beam)."""

import pytest
import torch

from model_helpers import randomize_trainable
from recipe.offline import LM_FAMILIES

EXPECTED_LAYERS = {"llama": "model.layers", "mistral": "model.layers", "qwen2": "model.layers",
                   "mpt": "transformer.blocks", "gpt_neox": "gpt_neox.layers", "opt": "model.decoder.layers",
                   "gpt2": "transformer.h", "gptj": "transformer.h"}


@pytest.mark.parametrize("family", LM_FAMILIES)
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
