"""Our tokenization equals pycocoevalcap's PTBTokenizer (Stanford CoreNLP through Java), token for token."""

import pytest
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from recipe.eval.metrics.ptb_tokenize import ptb_tokenize, ptb_tokenize_corpus

# Rules the generated set may hit rarely or never, one line each.
EDGE_CASES = [
    "A man's dog isn't running. They're here, we'll go! I'm sure you've seen it; he'd said so.",
    "The colour of the theatre: grey & white... Really?? \"Quoted text\" and 'single quotes' (parens)",
    "It costs $3.50 or 1,000 dollars -- 50% off; 3/4 of a cake, 2.5 km, 10:30 am, U.S. flag, Mr. Smith",
    "A well-known two-year-old kid's toy. Dogs' bowls. can't won't don't DON'T Can't gonna wanna cannot",
    "hello.World end. Mixed CASE Words. A.B.C. x-ray 3-D self-driving etc.",
    "multiple   spaces   here ,and comma , tab\there / * # @ ~ ^ | + = < >",
    "it's 5 o'clock, rock 'n' roll, 'tis the season, ma'am, '90s 'cause",
    "Plan B. Dr. Who. St. john. I met Mr. Jr. vs. Inc. Ltd. Co. Mt. Fuji Ave. Jan. a.m. p.m. i.e. USA. TV.",
    "3. number 3.5. end.Next x.y Wow!! what?! really?!? ok... hmm.... yes.. no! !hi ?hi .hi ,hi ;hi :hi",
    "word- -word a - b a -- b a---b a--b 1-2 (1) [x] {y} \"hi\" 'hi' it's' don't's JOHN'S. DON'T",
    "100% $5 #1 @home a/b 1/2 3:2 a:b 1.000.000 1,2,3 .5 5. -5 +5 1e5 5th 10x hi,there a;b a!b a'b",
    "don\u2019t it\u2019s \u201cquoted\u201d \u2018single\u2019 \u2014 em \u2013 en \u2026 caf\u00e9",
    "I'd've you'll he's she'd we've they'd it'll I'M WE'RE Let's D'oh O'Neil",
    "",
]


def test_equal_on_generated_caption_set(caption_set, coco_tokenized):
    references, candidates = caption_set
    coco_refs, coco_cands = coco_tokenized
    assert ptb_tokenize_corpus(references) == coco_refs
    assert ptb_tokenize_corpus({k: [c] for k, c in candidates.items()}) == coco_cands


@pytest.fixture(scope="module")
def coco_edge_cases() -> list[str]:
    tokenized = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(EDGE_CASES)})
    return [tokenized[i][0] for i in range(len(EDGE_CASES))]


@pytest.mark.parametrize("index", range(len(EDGE_CASES)))
def test_equal_on_edge_cases(coco_edge_cases, index):
    assert " ".join(ptb_tokenize(EDGE_CASES[index])) == coco_edge_cases[index]
