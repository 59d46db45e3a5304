"""Pure text shaping: templates, image<->sentence assignment, cleanup and label masks (no shards)."""

import numpy as np
import pytest

from recipe.data import text
from recipe.tokens import END_OF_CHUNK as EOC
from recipe.tokens import IGNORE_INDEX as X
from recipe.tokens import IMAGE as IMG


def test_pair_text_strips_caption_and_marker_strings():
    assert text.pair_text("  a red square \n", "</s>") == f"{IMG}a red square{EOC}</s>"
    assert text.pair_text(f"two {IMG}images", "</s>") == f"{IMG}two images{EOC}</s>"


def test_pair_labels_mask_only_the_image_token():
    assert text.pair_labels([7, 5, 6, 9, 2], image_id=7) == [X, 5, 6, 9, 2]


SIM = np.array([
    [0.30, 0.50, 0.10],  # image 0 prefers sentence 1
    [0.20, 0.45, 0.26],  # image 1 also prefers sentence 1; its second best is sentence 2
    [0.25, 0.10, 0.05],  # image 2 prefers sentence 0
])


def test_argmax_lets_images_share_a_sentence():
    assert text.assign_images(SIM, [0, 1, 2], "argmax", 0.24) == [(0, 1), (1, 1), (2, 0)]


def test_one_to_one_gives_each_sentence_at_most_one_image():
    # Hungarian matching maximises the total: 0->1 (.50), 1->2 (.26), 2->0 (.25).
    assert text.assign_images(SIM, [0, 1, 2], "one_to_one", 0.24) == [(0, 1), (1, 2), (2, 0)]


def test_threshold_and_validity_filter_pairs():
    assert text.assign_images(SIM, [0, 1, 2], "one_to_one", 0.255) == [(0, 1), (1, 2)]
    assert text.assign_images(SIM, [1, 2], "argmax", 0.24) == [(1, 1), (2, 0)]
    assert text.assign_images(SIM, [], "argmax", 0.0) == []
    with pytest.raises(ValueError, match="unknown assignment"):
        text.assign_images(SIM, [0], "greedy", 0.0)


def test_more_images_than_sentences_one_to_one_matches_as_many_as_sentences():
    sim = np.array([[0.3], [0.4]])
    assert text.assign_images(sim, [0, 1], "one_to_one", 0.0) == [(1, 0)]


def test_mmc4_text_layout_and_cleanup():
    doc, order = text.mmc4_text(["s0", "s1", "s2", "s3"], [(0, 2), (1, 1)], 6, "</s>")
    # The reference's join, first-eoc removal and space cleanup; images precede their sentences.
    assert doc == f"s0{IMG}s1{EOC}{IMG}s2 s3{EOC}</s>"
    # Fix: images in <image> order (image 1 is matched to an earlier sentence than image 0).
    assert order == [1, 0]


def test_mmc4_text_keeps_first_max_images_by_image_index_and_repeats_markers_for_shared_sentences():
    doc, order = text.mmc4_text(["a", "b"], [(0, 1), (1, 1), (2, 0)], 2, "E")
    assert doc == f"a{IMG}{EOC}{IMG}b{EOC}E"
    assert order == [0, 1]


def test_clean_interleaved_removes_only_the_first_eoc():
    assert text.clean_interleaved(f"{EOC}{IMG} x {EOC}{IMG} y") == f"{IMG}x{EOC}{IMG}y"


def test_fixed_text_places_images_before_segments_with_no_separator():
    doc, order = text.fixed_text(["Intro. ", "Mid. ", "End."], [0, 2, 3], 6, "E")
    assert doc == f"{IMG}Intro. Mid.{EOC}{IMG}End.{EOC}{IMG}{EOC}E"
    assert order == [0, 1, 2]


def test_fixed_text_keeps_exactly_max_images():
    segs = [f"s{i}." for i in range(5)]
    doc, order = text.fixed_text(segs, [0, 1, 2, 3, 4], 3, "E")
    assert doc.count(IMG) == 3 and order == [0, 1, 2]
    assert doc == f"{IMG}s0.{EOC}{IMG}s1.{EOC}{IMG}s2.{EOC}E"
    with pytest.raises(ValueError, match="outside"):
        text.fixed_text(segs, [9], 3, "E")


def test_interleaved_labels_follow_the_reference_mask():
    I, E, P = 100, 101, 0  # <image>, <|endofchunk|>, pad
    ids = [5, 6, I, 7, 8, E, I, 9, E, 2, P, P]
    mask = [1] * 10 + [0, 0]
    # before the first image: ignored; images: ignored; eoc: trained; eos after the last eoc: ignored; pad: ignored
    assert text.interleaved_labels(ids, mask, I, E) == [X, X, X, 7, 8, E, X, 9, E, X, X, X]


def test_interleaved_labels_mask_text_between_eoc_and_next_image():
    I, E = 100, 101
    assert text.interleaved_labels([I, 4, E, 5, 6, I, 7], [1] * 7, I, E) == [X, 4, E, X, X, X, 7]
