"""Few-shot prompts of OpenFlamingo's evaluation (`open_flamingo/eval/evaluate.py` with its OpenFlamingo
eval model's prompt strings), and the reference's cleaning of generated captions.

A prompt is the demonstrations, each followed by a separator ("\\n" for captioning and VQA, nothing for
classification), then the query. Zero-shot evaluation uses two text-only demonstrations (Flamingo's
protocol): the demonstrations' text is kept with its `<image>` markers removed, and only the query's image
is passed. Captions of demonstrations are stripped; a VQA demonstration shows the first human answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from recipe.tokens import END_OF_CHUNK, IMAGE

ZERO_SHOT_DEMOS = 2


def _with_answer(prefix: str, answer: str | None) -> str:
    """A demonstration (answer given, closed by <|endofchunk|>) or a query (left open for the model)."""
    return f"{prefix}{answer}{END_OF_CHUNK}" if answer is not None else prefix


def caption_prompt(caption: str | None = None) -> str:
    return _with_answer(f"{IMAGE}Output:", caption)


def vqa_prompt(question: str, answer: str | None = None) -> str:
    return _with_answer(f"{IMAGE}Question:{question} Short answer:", answer)


def hateful_memes_prompt(text: str, label: str | None = None) -> str:
    return _with_answer(f"{IMAGE}is an image with: '{text}' written on it. Is it hateful? Answer:", label)


def imagenet_prompt(label: str | None = None) -> str:
    return _with_answer(f"{IMAGE}Output:", label)


def demos_needed(num_shots: int) -> int:
    """Demonstrations to draw for `num_shots` (zero-shot draws two, shown as text only)."""
    return num_shots if num_shots > 0 else ZERO_SHOT_DEMOS


def few_shot_prompt(demos: Sequence[str], query: str, num_shots: int, separator: str = "\n") -> str:
    """The model's input text: formatted `demos` (see the *_prompt functions), then the open `query`."""
    context = "".join(demo + separator for demo in demos)
    if num_shots == 0:
        context = context.replace(IMAGE, "")
    return context + query


def clean_caption(generation: str) -> str:
    """The reference's caption from a generated continuation: cut before a next "Output", quotes removed."""
    return generation.split("Output", 1)[0].replace('"', "")
