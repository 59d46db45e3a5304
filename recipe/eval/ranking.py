"""Classification by rank over class names, as the reference's eval model scores it
(`get_rank_classifications` with `normalize_length=True`): a class's score for a prompt is the mean, over the
class name's tokens, of the model's log-probability of each token after the prompt and the name's earlier
tokens. The name is tokenized on its own (no special tokens, no leading space) and its tokens appended to the
prompt's.

Like the reference's default (KV caching), the left-padded prompts run once; every candidate class then
continues from that cache. The reference feeds one class at a time, one token per forward; here
`classes_per_forward` classes run together, each prompt's cache repeated for them, all of a name's tokens in
one forward (right-padded to the longest name of the group, which causality keeps out of the shorter names'
scores). Deliberate differences, so that a prompt's scores do not depend on the other prompts of its batch:
the name's tokens do not attend to the prompt's left padding (the reference's cached path passes them no
attention mask), and position ids count the prompt's real tokens only, as `generate` does (the reference lets
an LM with absolute positions see the padding).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch

from recipe.eval.generation import prepare_batch


def class_tokens(tokenizer, class_names: Sequence[str]) -> list[list[int]]:
    """Each class name's token ids, as the reference tokenizes it for scoring."""
    return [tokenizer(name, add_special_tokens=False).input_ids for name in class_names]


def rank_classes(model, tokenizer, image_transform, texts: Sequence[str], images: Sequence[Sequence],
                 tokens: Sequence[Sequence[int]], classes_per_forward: int = 32,
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """(prompts, classes) float32 scores on the host: mean token log-likelihood of each class name (`class_tokens`) after
    each open prompt. `images[i]`: PIL images of prompt i, one per `<image>` in its text."""
    input_ids, attention_mask, vision_x, num_images = prepare_batch(model, tokenizer, image_transform, texts, images)
    device, lm = input_ids.device, model.lang_encoder
    takes_positions = "position_ids" in inspect.signature(lm.forward).parameters
    real = attention_mask.sum(dim=1, keepdim=True)  # each prompt's unpadded length
    positions = {"position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0)} if takes_positions else {}
    scores = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                                enabled=autocast_dtype is not None), \
            model.cached_media(vision_x, num_images):
        prompt = lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **positions)
        first = prompt.logits[:, -1].float().log_softmax(dim=-1)  # predicts each name's first token
        cache = prompt.past_key_values
        del prompt  # the logits of every prompt position are not needed while the classes run
        for start in range(0, len(tokens), classes_per_forward):
            group = tokens[start:start + classes_per_forward]
            scores.append(_score_group(lm, cache, first, attention_mask, real, group, takes_positions))
    return torch.cat(scores, dim=1).cpu()  # the metrics (AUC, top-1) run on the host


def _score_group(lm, cache, first: torch.Tensor, attention_mask: torch.Tensor, real: torch.Tensor,
                 group: Sequence[Sequence[int]], takes_positions: bool) -> torch.Tensor:
    """(prompts, len(group)) scores of one group of class names, continuing every prompt's cache."""
    prompts, classes, longest = first.shape[0], len(group), max(len(t) for t in group)
    device = first.device
    names = torch.zeros(classes, longest, dtype=torch.long, device=device)
    name_mask = torch.zeros(classes, longest, dtype=attention_mask.dtype, device=device)
    for j, ids in enumerate(group):
        names[j, :len(ids)] = torch.tensor(ids, device=device)
        name_mask[j, :len(ids)] = 1
    # Row p * classes + j: prompt p followed by class j (prompt rows repeated in place, as the images are).
    rows_ids, rows_name_mask = names.repeat(prompts, 1), name_mask.repeat(prompts, 1)
    mask = torch.cat([attention_mask.repeat_interleave(classes, dim=0), rows_name_mask], dim=1)
    extra = {}
    if takes_positions:
        extra["position_ids"] = real.repeat_interleave(classes, dim=0) + torch.arange(longest, device=device)
    out = lm(input_ids=rows_ids, attention_mask=mask, past_key_values=_repeat_cache(cache, classes),
             use_cache=True, **extra)
    logprobs = out.logits[:, :-1].float().log_softmax(dim=-1)  # position t predicts the name's token t + 1
    later = logprobs.gather(2, rows_ids[:, 1:, None]).squeeze(2)
    head = first.repeat_interleave(classes, dim=0).gather(1, rows_ids[:, :1])
    per_token = torch.cat([head, later], dim=1) * rows_name_mask
    return (per_token.sum(dim=1) / rows_name_mask.sum(dim=1)).view(prompts, classes)


def _repeat_cache(cache, repeats: int):
    """A copy of the prompts' KV cache with each prompt's row repeated in place `repeats` times: a transformers
    `Cache`, or the per-layer tuples of remote-code LMs (batch first in every layout they use). The forward
    extends the cache it gets, so the prompts' own stays as it was for the next group."""
    if isinstance(cache, (tuple, list)):
        return type(cache)(_repeat_cache(part, repeats) for part in cache)
    if isinstance(cache, torch.Tensor):
        return cache.repeat_interleave(repeats, dim=0)
    copied = copy.deepcopy(cache)
    copied.batch_repeat_interleave(repeats)
    return copied
