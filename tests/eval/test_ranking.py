"""Rank classification scores each class name as a direct forward of the whole prompt + name would (mean token
log-likelihood), for batched, left-padded prompts, groups of classes and every kind of LM cache and positions."""

import numpy as np
import pytest
import stand_ins
import torch
from PIL import Image

from recipe.eval.ranking import class_tokens, rank_classes
from recipe.model import build_flamingo

# Names of one and several tokens (the tests' tokenizer knows these words), a class per group of 2 left over.
CLASS_NAMES = ["red", "green circle", "blue", "a big yellow square", "the triangle on the left"]
PROMPTS = ["<image>Output:red<|endofchunk|><image>Output:",
           "a photo of<image>Output:"]


def _images(seed: int, count: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture(scope="module")
def build(vision_name, tokenizer_dir, lm_dir_factory):
    """`build(family)` -> (model with random trainable weights, so that images change the scores; tokenizer;
    image transform)."""
    def make(family):
        model, tokenizer, transform = build_flamingo(vision_name, None, lm_dir_factory(family), tokenizer_dir,
                                                     trust_remote_code=family in stand_ins.REMOTE_LMS)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        return model.eval(), tokenizer, transform
    return make


def _direct(model, tokenizer, transform, text, images, names) -> torch.Tensor:
    """Per class, one forward of the unpadded prompt followed by the name's tokens: the mean log-probability
    of the name's tokens."""
    prompt = tokenizer(text, return_tensors="pt").input_ids
    vision_x = torch.stack([transform(img) for img in images]).unsqueeze(0)
    scores = []
    for ids in class_tokens(tokenizer, names):
        full = torch.cat([prompt, torch.tensor([ids])], dim=1)
        with torch.no_grad():
            logits = model(vision_x, full).logits[0].float()
        logprobs = logits[prompt.shape[1] - 1:-1].log_softmax(-1)
        scores.append(logprobs.gather(1, torch.tensor(ids)[:, None]).mean())
    return torch.stack(scores)


@pytest.mark.parametrize("family", ["mpt", "llama", "gpt2", "mosaic_gpt", "mpt_remote"])
def test_scores_equal_direct_forwards(build, family):
    """mpt: ALiBi, no position ids; llama: rotary; gpt2: absolute positions (padding must not shift them);
    mosaic_gpt / mpt_remote: remote code keeping per-layer tuple caches."""
    model, tokenizer, transform = build(family)
    images = [_images(0, 2), _images(1, 1)]
    tokens = class_tokens(tokenizer, CLASS_NAMES)
    assert len({len(t) for t in tokens}) > 2  # names of different lengths share a group
    ranked = rank_classes(model, tokenizer, transform, PROMPTS, images, tokens, classes_per_forward=2)
    assert ranked.shape == (2, len(CLASS_NAMES)) and ranked.dtype == torch.float32
    for row, (text, imgs) in enumerate(zip(PROMPTS, images)):
        direct = _direct(model, tokenizer, transform, text, imgs, CLASS_NAMES)
        torch.testing.assert_close(ranked[row], direct, atol=1e-4, rtol=1e-4)
        assert ranked[row].argmax() == direct.argmax()
    assert model.conditioning.latents is None  # the cached images are released

    # One group of all classes, or one class at a time: the same scores.
    for per_forward in (1, len(CLASS_NAMES)):
        again = rank_classes(model, tokenizer, transform, PROMPTS, images, tokens, classes_per_forward=per_forward)
        torch.testing.assert_close(again, ranked, atol=1e-5, rtol=1e-5)


def test_picks_the_class_the_model_predicts(build):
    """With the name's tokens taken from the model's own greedy continuation of the prompt, that name outscores
    names made of the tokens it ranks lowest."""
    model, tokenizer, transform = build("llama")
    images = [_images(2, 1)]
    prompt = ["<image>Output:"]
    enc = tokenizer(prompt, return_tensors="pt")
    vision_x = transform(images[0][0])[None, None]
    with torch.no_grad():
        greedy = model.generate(vision_x, enc.input_ids, enc.attention_mask, max_new_tokens=3, do_sample=False,
                                eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
        worst = model(vision_x, enc.input_ids).logits[0, -1].argsort()[:4]
    best = greedy[0, enc.input_ids.shape[1]:].tolist()
    candidates = [[worst[0].item(), worst[1].item()], best, [worst[2].item()], [worst[3].item(), best[0]]]
    scores = rank_classes(model, tokenizer, transform, prompt, images, candidates, classes_per_forward=3)
    assert scores[0].argmax().item() == 1
