"""Does a model read its images? Held-out scores with the true images against the same samples with the images
rolled by one across the batch (every text then sees another sample's image): the loss, and the CIDEr of
generated captions. A model that uses the images has a clearly lower loss and a higher CIDEr with the true ones."""

from __future__ import annotations

import torch

from recipe.tokens import IGNORE_INDEX


def _rolled(x: torch.Tensor, roll: bool) -> torch.Tensor:
    return torch.roll(x, 1, dims=0) if roll else x


@torch.no_grad()
def loss_gap(flamingo, batches) -> tuple[float, float]:
    """(token-mean loss with the true images, with the images rolled) over `batches` ({source: batch} dicts as
    the data loaders yield them)."""
    from recipe.composer_model import shifted_token_mean_ce

    was_training = flamingo.training
    flamingo.eval()
    sums = {False: 0.0, True: 0.0}
    tokens = 0
    for batch in batches:
        for b in batch.values():
            n = int((b["labels"][:, 1:] != IGNORE_INDEX).sum())
            for roll in sums:
                logits = flamingo(vision_x=_rolled(b["images"], roll), lang_x=b["input_ids"],
                                  attention_mask=b["attention_mask"], num_images=_rolled(b["num_images"], roll)).logits
                sums[roll] += shifted_token_mean_ce(logits, b["labels"]).item() * n
            tokens += n
    flamingo.train(was_training)
    return sums[False] / tokens, sums[True] / tokens


def cider_gap(flamingo, tokenizer, image_transform, samples: list[tuple[str, str]],
              max_new_tokens: int = 12) -> tuple[float, float]:
    """(CIDEr-D x100 of greedy captions for the `(image path, true caption)` samples, with the images rolled),
    scored with recipe.eval's metric."""
    from PIL import Image

    from recipe.eval.generation import generate
    from recipe.eval.metrics.cider import cider_d
    from recipe.eval.metrics.ptb_tokenize import ptb_tokenize

    was_training = flamingo.training
    flamingo.eval()
    images = [[Image.open(path).convert("RGB")] for path, _ in samples]
    references = {i: [ptb_tokenize(text)] for i, (_, text) in enumerate(samples)}
    scores = []
    for shown in (images, images[1:] + images[:1]):
        # greedy: beam search without a length penalty prefers a small model's immediate <|endofchunk|>
        outputs = generate(flamingo, tokenizer, image_transform, ["<image>"] * len(shown), shown,
                           max_new_tokens=max_new_tokens, num_beams=1)
        scores.append(100.0 * cider_d({i: ptb_tokenize(o) for i, o in enumerate(outputs)}, references)[0])
    flamingo.train(was_training)
    return scores[0], scores[1]
