"""Pure text shaping for the training data: templates, image<->sentence assignment and label masks.

Everything here works on plain Python/numpy values (strings, token id lists, similarity matrices) so it
is unit-tested without shards, tokenizers or images. The rules follow the reference (OpenFlamingo 2.x,
`open_flamingo/train/data.py` and `train.py`) except where a docstring says "fix".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recipe.tokens import END_OF_CHUNK, IGNORE_INDEX, IMAGE

ASSIGNMENTS = ("one_to_one", "argmax")
_MARKER = END_OF_CHUNK + IMAGE


def strip_specials(s: str) -> str:
    """Remove literal marker strings from source text, so each `<image>` token has exactly one image."""
    return s.replace(IMAGE, "").replace(END_OF_CHUNK, "")


def pair_text(caption: str, eos: str) -> str:
    """LAION-style template: one leading image, the stripped caption, end of chunk, eos."""
    return f"{IMAGE}{strip_specials(caption).strip()}{END_OF_CHUNK}{eos}"


def pair_labels(input_ids: Sequence[int], image_id: int) -> list[int]:
    """Every real token is a target except `<image>` (padding is masked at collation)."""
    return [IGNORE_INDEX if t == image_id else t for t in input_ids]


def assign_images(similarity: np.ndarray, valid: Sequence[int], method: str,
                  threshold: float) -> list[tuple[int, int]]:
    """Match images to sentences; returns `(image, sentence)` pairs sorted by image index.

    `similarity` is images x sentences; only the image indices in `valid` take part. `one_to_one` is the
    reference HEAD's Hungarian matching (each sentence gets at most one image); `argmax` is the v2 release's
    per-image best sentence (several images may share one). Pairs below `threshold` are dropped.
    """
    if method not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {method!r}; expected one of {ASSIGNMENTS}")
    valid = list(valid)
    if not valid:
        return []
    sim = np.asarray(similarity, dtype=np.float64)[valid]
    if sim.ndim != 2 or sim.shape[1] == 0:
        return []
    if method == "one_to_one":
        from scipy.optimize import linear_sum_assignment
        rows, cols = linear_sum_assignment(-sim)
    else:
        rows = np.arange(len(valid))
        cols = sim.argmax(axis=1)
    pairs = [(valid[r], int(c)) for r, c in zip(rows, cols) if sim[r, c] >= threshold]
    return sorted(pairs)


def clean_interleaved(text: str) -> str:
    """The reference's cleanup: drop the first end-of-chunk and the spaces around image markers."""
    text = text.replace(END_OF_CHUNK, "", 1)
    return (text.replace(" " + END_OF_CHUNK, END_OF_CHUNK)
            .replace(IMAGE + " ", IMAGE).replace(" " + IMAGE, IMAGE))


def mmc4_text(sentences: Sequence[str], pairs: Sequence[tuple[int, int]], max_images: int,
              eos: str) -> tuple[str, list[int]]:
    """Interleave MMC4 sentences with their matched images.

    Keeps the first `max_images` pairs in image-index order (as the reference), puts each image's marker
    before its sentence, joins sentences with a space and closes with end-of-chunk + eos. Returns the text
    and the image indices **in the order their `<image>` tokens appear** (fix: the reference stacks images
    in image-index order, so non-monotonic matches attend to the wrong image).
    """
    kept = list(pairs)[:max_images]
    by_sentence: dict[int, list[int]] = {}
    for image, sentence in kept:
        by_sentence.setdefault(sentence, []).append(image)
    parts = [_MARKER * len(by_sentence.get(i, ())) + strip_specials(s) for i, s in enumerate(sentences)]
    order = [image for i in sorted(by_sentence) for image in by_sentence[i]]
    return f"{clean_interleaved(' '.join(parts))}{END_OF_CHUNK}{eos}", order


def fixed_text(segments: Sequence[str], image_positions: Sequence[int], max_images: int,
               eos: str) -> tuple[str, list[int]]:
    """Interleave a document whose image positions are given (ChatGPT-generated data, own data).

    Image k goes before `segments[image_positions[k]]` (or at the end when the position equals
    `len(segments)`); segments are joined with no separator. At most `max_images` images are kept: the
    text is cut before the marker of image `max_images + 1` (fix: the reference cut one image early).
    Returns the text and the image indices in `<image>` order.
    """
    by_segment: dict[int, list[int]] = {}
    for image, pos in enumerate(image_positions):
        if not 0 <= pos <= len(segments):
            raise ValueError(f"image {image} placed at segment {pos}, outside 0..{len(segments)}")
        by_segment.setdefault(pos, []).append(image)
    parts = [_MARKER * len(by_segment.get(i, ())) + strip_specials(s) for i, s in enumerate(segments)]
    parts.append(_MARKER * len(by_segment.get(len(segments), ())))
    order = [image for i in sorted(by_segment) for image in by_segment[i]]
    text = "".join(parts)
    if len(order) > max_images:
        cut = -1
        for _ in range(max_images + 1):
            cut = text.index(_MARKER, cut + 1)
        text, order = text[:cut], order[:max_images]
    return f"{clean_interleaved(text)}{END_OF_CHUNK}{eos}", order


def interleaved_labels(input_ids: Sequence[int], attention_mask: Sequence[int], image_id: int,
                       eoc_id: int) -> list[int]:
    """The reference's interleaved label mask: padding, everything before the first `<image>`, the
    tokens after each end-of-chunk up to the next `<image>` (so the closing eos is never a target) and
    every `<image>` are ignored; the end-of-chunk tokens themselves stay targets."""
    labels = []
    seen_image = False
    after_eoc = False
    for tok, real in zip(input_ids, attention_mask):
        if tok == image_id:
            seen_image, after_eoc = True, False
            labels.append(IGNORE_INDEX)
        elif not real or not seen_image or after_eoc:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(tok)
            after_eoc = tok == eoc_id
    return labels
