"""Prompts are the reference's byte for byte (the strings of OpenFlamingo's eval model, as
../shared/reference/openflamingo.md §4 records them), and the captions the reference would keep."""

import pytest

from recipe.eval import prompts


def test_demonstration_and_query_strings():
    assert prompts.caption_prompt("A cat.") == "<image>Output:A cat.<|endofchunk|>"
    assert prompts.caption_prompt() == "<image>Output:"
    assert prompts.vqa_prompt("What color?", "red") == "<image>Question:What color? Short answer:red<|endofchunk|>"
    assert prompts.vqa_prompt("What color?") == "<image>Question:What color? Short answer:"
    assert prompts.hateful_memes_prompt("hi there", "no") == \
        "<image>is an image with: 'hi there' written on it. Is it hateful? Answer:no<|endofchunk|>"
    assert prompts.imagenet_prompt() == "<image>Output:"


@pytest.mark.parametrize("shots", [0, 2, 4])
def test_few_shot_layout(shots):
    demos = [prompts.caption_prompt(c) for c in ("one", "two", "three", "four")[:prompts.demos_needed(shots)]]
    text = prompts.few_shot_prompt(demos, prompts.caption_prompt(), shots)
    if shots == 0:  # two text-only demonstrations, then the only image: the query's
        assert text == "Output:one<|endofchunk|>\nOutput:two<|endofchunk|>\n<image>Output:"
    else:
        assert text == "".join(d + "\n" for d in demos) + "<image>Output:"
        assert text.count("<image>") == shots + 1
    # classification concatenates its demonstrations without a separator
    labels = [prompts.imagenet_prompt(c) for c in ("tench", "goldfish")]
    assert prompts.few_shot_prompt(labels, prompts.imagenet_prompt(), 2, separator="") == \
        "<image>Output:tench<|endofchunk|><image>Output:goldfish<|endofchunk|><image>Output:"


def test_clean_caption_matches_the_reference():
    from open_flamingo.eval.coco_metric import postprocess_captioning_generation

    for out in ['A "dog" runs.<|endofchunk|>', "a cat Output: a dog", 'plain', '"quoted" Output"x"']:
        assert prompts.clean_caption(out) == postprocess_captioning_generation(out).replace('"', "")
