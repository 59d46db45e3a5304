"""`Flamingo.compile_blocks` (torch.compile of every repeated block) computes what the eager model computes."""

import torch

from model_helpers import laion_batch, mmc4_batch, randomize_trainable


def _losses_and_grads(model, tok):
    model.zero_grad(set_to_none=True)
    losses = []
    for images, ids, mask, n in (laion_batch(tok), mmc4_batch(tok)):  # two shapes through the same blocks
        loss = model(vision_x=images, lang_x=ids, attention_mask=mask, num_images=n).logits.square().mean()
        loss.backward()
        losses.append(loss.detach())
    return torch.stack(losses), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_compiled_blocks_match_eager(build):
    model, tok = build("llama")
    randomize_trainable(model)
    eager_loss, eager_grads = _losses_and_grads(model, tok)
    model.compile_blocks()
    loss, grads = _losses_and_grads(model, tok)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == eager_grads.keys() and len(grads) > 0
    for name, g in grads.items():
        torch.testing.assert_close(g, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)
