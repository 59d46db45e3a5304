"""Caption tokenization of the COCO caption evaluation, in pure Python.

Reproduces pycocoevalcap's `PTBTokenizer`: Stanford CoreNLP 3.4.1's PTBTokenizer run with `-preserveLines
-lowerCase` (one caption per line, tokens lowercased after lexing), then the punctuation tokens that
pycocoevalcap lists are dropped. Covered: English captions in ASCII plus typographic quotes, dashes and the
ellipsis character — words, capitals, numbers (decimals, thousands, times, signs), hyphenated words,
contractions, possessives, quotes, brackets, abbreviations and sentence punctuation. Not covered (CoreNLP
lexes them specially): URLs, e-mail addresses, SGML, emoticons, fractions written with a space ("2 1/2"),
currency glued to letters ("US$5"), "No." before a number, "y'all", "rock'n'roll".
tests/eval/test_ptb_tokenize.py checks equality with the Java tool.
"""

import re
from collections.abc import Hashable, Mapping, Sequence

# Tokens the reference drops after tokenization. Its list also names -LRB- -RRB- -LCB- -RCB-, but it
# compares against lowercased output, so bracket tokens survive as -lrb- etc. (reproduced here).
_DROPPED = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})

# CoreNLP's normalisation of typographic characters (PTB3 escaping with LaTeX quotes).
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                              "\u2013": "--", "\u2014": "--", "\u2026": "..."})

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

# Words CoreNLP keeps together with their final period (beyond dotted forms like u.s. and single letters).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr mt ave capt gen sgt rev gov sen rep lt col inc ltd co vs etc ft jan feb "
    "aug sept oct nov dec".split())

# Words CoreNLP splits with no apostrophe to split at: "gonna" -> "gon na", "'tis" -> "'t is"
# (the value is the length of the first piece).
_SPECIAL_SPLITS = {"cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "'tis": 2, "'twas": 2}
_CLITIC = re.compile(r"(.+?)('s|'re|'ll|'m|'ve|'d)$", re.IGNORECASE)
_NEGATION = re.compile(r"(.+)(n't)$", re.IGNORECASE)

# In-word apostrophes CoreNLP keeps: o'clock, d'oh (one letter but i/y), ma'am (vowel ' vowel), 'n'.
_APOSTROPHE_WORD = re.compile(r"[a-hj-xz]'[a-z]{2,}|[a-z]*[aeiouy]'[aeiou][a-z]*|'n'|'[0-9]0s|'cause",
                              re.IGNORECASE)
_DOTTED = re.compile(r"(?:[a-z]\.){2,}", re.IGNORECASE)  # u.s. a.m. e.g.
_INNER_PUNCT = re.compile(r"([,;:])")  # split inside words, kept inside numbers (1,000  10:30)
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:[.,:/][0-9]+)*|\.[0-9]+)")

# Pieces split off the front / the end of a whitespace-separated chunk, one at a time.
_LEAD = re.compile(r"\.{3,}|--+|[\"`(\[{$#,;:]|[!?]+|'(?!(?:s|re|ll|m|ve|d|tis|twas)\b)|\.(?![0-9])|-(?![0-9])",
                   re.IGNORECASE)
_TRAIL = re.compile(r"(?:\.\.\.|\.|--+|[\"`)\]},;:%]|[!?]+|-|')$")


def ptb_tokenize(caption: str) -> list[str]:
    """The tokens pycocoevalcap keeps for one caption (lowercased, punctuation dropped)."""
    line = caption.replace("\n", " ").translate(_TYPOGRAPHIC)
    tokens = [t for chunk in line.split() for t in _split_chunk(chunk)]
    return [t.lower() for t in tokens if t.lower() not in _DROPPED]


def ptb_tokenize_corpus(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's PTBTokenizer.tokenize shape: {image: [tokenized caption joined by spaces]}."""
    return {key: [" ".join(ptb_tokenize(c)) for c in caps] for key, caps in captions.items()}


def _split_chunk(chunk: str) -> list[str]:
    lead: list[str] = []
    trail: list[str] = []
    while chunk and not _is_word(chunk) and (m := _LEAD.match(chunk)):
        lead.append(_escape(m.group(), opening=True))
        chunk = chunk[m.end():]
    while chunk and not _is_word(chunk) and (m := _TRAIL.search(chunk)):
        trail.insert(0, _escape(m.group(), opening=False))
        chunk = chunk[:m.start()]
    return lead + [t for part in re.split(r"(--+)", chunk) if part for t in _split_word(part)] + trail


def _is_word(chunk: str) -> bool:
    """Chunks that are one token as they stand (the period of an abbreviation, a signed number, 'n')."""
    return bool(_APOSTROPHE_WORD.fullmatch(chunk) or _NUMBER.fullmatch(chunk)) or _keeps_period(chunk)


def _keeps_period(word: str) -> bool:
    if not word.endswith(".") or len(word) < 2:
        return False
    stem = word[:-1]
    return (stem.lower() in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())
            or bool(_DOTTED.fullmatch(word)))


def _split_word(word: str) -> list[str]:
    """Split one word without surrounding punctuation: contractions, a trailing period left by a clitic."""
    if word.startswith("--"):
        return ["--"]
    lower = word.lower()
    if lower in _SPECIAL_SPLITS:
        return [word[:_SPECIAL_SPLITS[lower]], word[_SPECIAL_SPLITS[lower]:]]
    if _APOSTROPHE_WORD.fullmatch(word):
        return [word]
    if m := _CLITIC.match(word):
        return _split_word(m.group(1)) + [m.group(2)]
    if m := _NEGATION.match(word):  # can't -> ca n't, won't -> wo n't, like do n't
        return [m.group(1), m.group(2)]
    if "'" in word and not word.startswith("'"):
        head, _, tail = word.partition("'")
        return [head, "'", *_split_word(tail)] if tail else [head, "'"]
    if _NUMBER.fullmatch(word):
        return [word]
    return [t for t in _INNER_PUNCT.split(word) if t]


def _escape(piece: str, opening: bool) -> str:
    """CoreNLP's form of a split-off piece: -LRB-, LaTeX quotes (``, ''), -- and ... normalised."""
    if piece == '"':
        return "``" if opening else "''"
    if piece in _BRACKETS:
        return _BRACKETS[piece]
    if piece.startswith("--"):
        return "--"
    if piece.startswith("..."):
        return "..."
    return piece
