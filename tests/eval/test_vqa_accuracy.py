"""VQA normalisation, accuracy and post-processing equal OpenFlamingo's copy of the official VQA evaluation."""

import pytest
from open_flamingo.eval.vqa_metric import VQA, VQAEval, postprocess_vqa_generation as reference_postprocess

from recipe.eval.metrics.vqa_accuracy import normalize_answer, postprocess_vqa_generation, vqa_accuracy

# One or more normalisation rules per answer: periods (end, between digits, before letters, more than the
# reference's 32), punctuation deleted next to a space / replaced inside a word / all deleted after digit,digit,
# number words, articles, contractions (and the capitalised keys that never match), spacing, case.
ANSWERS = [
    "Yes.", "3.5", "5.", "e.g. test", "a.b", "1.2.3.", "." * 40 + "x", "one", "Two dogs", "ten", "none", "zero",
    "eleven", "a dog", "the Cat", "an apple", "A", "dont", "isnt", "whats", "youre", "cant", "wont", "oclock",
    "yall", "Im", "Ive", "somebody'd", "he'dve", "10,000", "1,000 people", "red, white", "red,white",
    "black/white", "black / white", "hot-dog", "(left)", "( left )", "multiple   spaces", "\tTab\n", "What?!",
    "yes!", "x=y", "a_b", "<tag>", "@home", "`quoted`", '"quoted"', "[bracket] {brace}", "back\\slash",
    "plus+sign", "semi;colon", "it's", "Mr. T.", "2,5 and a-b", "it's 3:30", "", "   ",
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_normalisation_equals_reference(answer):
    reference = VQAEval(None, None)
    stripped = answer.replace("\n", " ").replace("\t", " ").strip()  # as its evaluate() does first
    expected = reference.processDigitArticle(reference.processPunctuation(stripped))
    assert normalize_answer(answer) == expected


def test_every_contraction_of_the_reference():
    reference = VQAEval(None, None)
    for word in reference.contractions:
        assert normalize_answer(word) == reference.processDigitArticle(reference.processPunctuation(word))


def _reference_accuracies(questions: list[tuple[str, list[str]]]) -> dict[int, float]:
    """The reference's per-question accuracy (×100, 2 decimals), run on in-memory VQA objects."""
    annotations = [{"question_id": q, "image_id": q, "question_type": "what", "answer_type": "other",
                    "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(answers)]}
                   for q, (_, answers) in enumerate(questions)]
    ground_truth, results = VQA(), VQA()
    ground_truth.dataset = {"annotations": annotations}
    results.dataset = {"annotations": [{"question_id": q, "image_id": q, "answer": prediction}
                                       for q, (prediction, _) in enumerate(questions)]}
    for vqa in (ground_truth, results):
        vqa.questions = {"questions": [{"question_id": q} for q in range(len(questions))]}
        vqa.createIndex()
    evaluation = VQAEval(ground_truth, results, n=2)
    evaluation.evaluate()
    return evaluation.evalQA


def test_accuracy_equals_reference():
    humans = ["2", "two", "Two.", "2 ", "dog", "the dog", "dogs", "a dog", "cat", "red, white"]
    questions = [(prediction, humans) for prediction in
                 ["2", "two", "dog", "Dog.", "dogs", "cat", "red white", "red, white", "bird", "TWO!"]]
    questions += [("yes", ["yes"] * k + ["no"] * (10 - k)) for k in range(11)]
    reference = _reference_accuracies(questions)
    for q, (prediction, answers) in enumerate(questions):
        assert round(100 * vqa_accuracy(prediction, answers), 2) == reference[q], (prediction, answers)


@pytest.mark.parametrize("generation", [
    "yes", "yes Question: what is it?", "blue, red", "two Answer: three", "Short answer: x", "a, b, c",
    "", "red and white\nQuestion: next", "QuestionAnswer", " two,three, four", "Answers, and more",
])
def test_postprocessing_equals_reference(generation):
    assert postprocess_vqa_generation(generation) == reference_postprocess(generation)
