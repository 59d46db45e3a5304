"""Our CIDEr-D on our tokenization equals pycocoevalcap's Cider on pycocoevalcap's PTBTokenizer output."""

import pytest
from pycocoevalcap.cider.cider import Cider

from recipe.eval.metrics.cider import cider_d
from recipe.eval.metrics.ptb_tokenize import ptb_tokenize


def test_equal_to_pycocoevalcap(caption_set, coco_tokenized):
    references, candidates = caption_set
    coco_refs, coco_cands = coco_tokenized
    coco_score, coco_scores = Cider().compute_score(coco_refs, coco_cands)

    score, scores = cider_d({k: ptb_tokenize(c) for k, c in candidates.items()},
                            {k: [ptb_tokenize(c) for c in caps] for k, caps in references.items()})

    assert 0 < score < 10  # a non-trivial set: neither all-zero nor all-identical
    assert score == pytest.approx(coco_score, abs=1e-9, rel=0)
    assert [scores[k] for k in coco_refs] == pytest.approx(list(coco_scores), abs=1e-9, rel=0)


def test_requires_matching_images():
    with pytest.raises(ValueError):
        cider_d({1: ["a"]}, {2: [["a"]]})
