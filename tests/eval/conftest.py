"""A COCO-like caption set written with a seeded RNG, and the COCO evaluation's own tokenization of it."""

import random

import pytest

SUBJECTS = ["a man", "A woman", "two dogs", "The cat", "3 children", "a group of people", "Mr. Smith",
            "Dr. Jones", "a 10-year-old boy", "the players", "An elderly couple", "some kids", "a well-dressed chef",
            "the team's captain", "a brown-and-white horse", "12 sheep", "the U.S. president", "A young girl",
            "my friend", "someone"]
VERBS = ["is riding", "are playing with", "isn't holding", "can't reach", "won't eat", "is sitting on",
         "is looking at", "holds", "throws", "was carrying", "has painted", "doesn't like", "carries",
         "is standing next to", "points at", "they're watching", "we've found", "is cutting", "cooks", "reads"]
OBJECTS = ["a red bike", "the dog's ball", "3.5 kg of apples", "$20 bills", "1,000 balloons",
           "an old-fashioned clock", "the kids' toys", "a well-known statue", "(maybe) a frisbee",
           'a sign that says "STOP"', "St. Louis", "the players' uniforms", "a slice of pizza", "2 umbrellas",
           "the T.V. remote", "a [blurry] photo", "an iPhone", "the colour-ful wall", "50% of the cake",
           "a 3-D puzzle", "{curly} brackets", "hot-dogs & fries", "a bowl of soup"]
EXTRAS = ["at 10:30 a.m.", "in the rain", "on a sunny day", "-- what a view", "near the beach", "; it's late",
          ", e.g. apples", "at 5 o'clock", "while I'm waiting", "so you'll see", "before she'd left",
          "as we'd planned", "-- isn't it?", ": very nice", "with 2.5 times the size", "on Jan. 5",
          "and it's raining", "(again)", "... nice", "-- wow", "in the U.K.", "where there's snow",
          "as if it's 'fun'", "with a well-known smile"]
ENDINGS = [".", ".", ".", "", "!", "?", " .", "...", "!!", "?!", ".\n"]


def _caption(rng: random.Random) -> str:
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
    words += rng.sample(EXTRAS, rng.choice([0, 0, 1, 1, 2]))
    text = " ".join(words) + rng.choice(ENDINGS)
    text = text.replace(" , ", ", ").replace(" ; ", "; ").replace(" : ", ": ")
    if rng.random() < 0.1:
        text = text.upper()
    elif rng.random() < 0.7:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.15:
        text = text.replace(" ", "  ", 1)  # stray double space
    return text


@pytest.fixture(scope="session")
def caption_set() -> tuple[dict[int, list[str]], dict[int, str]]:
    """60 images x 5 references and one candidate each; some candidates are a reference, for overlap."""
    rng = random.Random(20240521)
    references = {image: [_caption(rng) for _ in range(5)] for image in range(60)}
    candidates = {image: rng.choice(refs) if rng.random() < 0.2 else _caption(rng)
                  for image, refs in references.items()}
    return references, candidates


@pytest.fixture(scope="session")
def coco_tokenized(caption_set) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """pycocoevalcap's PTBTokenizer (Stanford's, through Java) on the references and the candidates."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references, candidates = caption_set
    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({k: [{"caption": c} for c in caps] for k, caps in references.items()})
    cands = tokenizer.tokenize({k: [{"caption": c}] for k, c in candidates.items()})
    return refs, cands
