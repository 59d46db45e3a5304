"""VQA accuracy with the official answer normalisation, and the post-processing of generated answers.

Matches OpenFlamingo's copy of the official VQA evaluation (`open_flamingo/eval/vqa_metric.py`, `VQAEval`):
the prediction and all ten human answers are normalised (punctuation, periods, number words, articles,
contractions — that copy normalises always, the original only when the humans disagree), and the accuracy of
a prediction is min(#matching humans / 3, 1) averaged over the ten leave-one-human-out subsets. Callers report
the mean times 100. `postprocess_vqa_generation` matches the reference function of the same name.
"""

import re
from collections.abc import Sequence

# Replaced by a space, or deleted when the answer has the character next to a space or a digit,digit.
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The reference's look-behind for "no digit before" is mistyped as a look-ahead, so a period is deleted
# whenever no digit follows it; its `re.UNICODE` lands in the count argument, capping deletions at 32.
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS_DELETED = int(re.UNICODE)

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})

# Apostrophe-less spellings and their canonical forms, as the reference lists them (its quirks included:
# "somebody'd" maps to "somebodyd"). Its capitalised keys (Im, Ive, Id've, I'dve) never match lowercased
# words, so they are left out.
_CONTRACTIONS = dict(pair.split("=") for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd
howll=how'll hows=how's isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am
mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't
mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at
'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's
shouldve=should've shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've
somebody'd=somebodyd somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll
somebodys=somebody's someoned=someone'd someoned've=someone'd've someone'dve=someone'd've
someonell=someone'll someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd thered've=there'd've
there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've
theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've
weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll
whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
""".split())


def normalize_answer(answer: str) -> str:
    """The reference's normalisation of one answer (prediction or human answer)."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _normalize_words(_normalize_punctuation(answer))


def _normalize_punctuation(text: str) -> str:
    # the decision for each character looks at the original text, not at the partly cleaned one
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        out = out.replace(p, "" if delete_all or f"{p} " in text or f" {p}" in text else " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS_DELETED)


def _normalize_words(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Accuracy in [0, 1] of one prediction against the (ten) human answers of its question."""
    pred = normalize_answer(prediction)
    humans = [normalize_answer(a) for a in human_answers]
    matches = sum(h == pred for h in humans)
    # leaving human i out removes one match exactly when human i matched
    per_subset = [min(1.0, (matches - (h == pred)) / 3) for h in humans]
    return sum(per_subset) / len(per_subset)


def postprocess_vqa_generation(generation: str) -> str:
    """The answer part of a generated continuation: cut before a new Question/Answer/Short, then at ", "."""
    answer = re.split("Question|Answer|Short", generation, maxsplit=1)[0]
    return answer.split(", ", 1)[0]
