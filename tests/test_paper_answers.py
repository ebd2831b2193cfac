"""The paper's comparison of an answer with gold (its evaluator's `answer_clean` and
`compare_answer_with_groundtruth`): string equality after its own cleaning, no tolerance, no
algebra. Each example here is scored differently by the project's scorer and the paper's rules,
or pins one of the paper's cleaning steps."""

from __future__ import annotations

import pytest

from study.core.datasets import score, score_paper
from study.core.datasets.answers import canonical_number
from study.core.datasets.paper_answers import delete_extra_zero, find_box, paper_equal, strip_math


@pytest.mark.parametrize("dataset, text, gold, project, paper", [
    # numbers: the evaluator's float string, no tolerance
    ("svamp", "Each gets 1/3. The answer is 1/3.", canonical_number("1/3"), True, False),
    ("svamp", "The answer is 7.0000001.", "7", True, False),
    # the first number after the phrase, not the value after "="
    ("svamp", "The answer is 12 + 13 = 25.", "25", True, False),
    # a phrase written twice: only the text before the first blank line is read
    ("gsm8k", "The answer is 5.\n\nThe answer is 7.", "5", False, True),
    ("gsm8k", "The answer is 5.\n\nThe answer is 7.", "7", True, False),
    # MATH: strings after the evaluator's cleaning, not values
    ("math", "The answer is \\boxed{0.5}.", "\\frac{1}{2}", True, False),
    ("math", "The answer is \\boxed{x+1}.", "1+x", True, False),
    # commonsense: the first label, written exactly as the paper's test files write gold
    ("csqa", "The answer is B. On reflection, the answer is C.", "C", True, False),
    ("obqa", "so the answer is d", "D", True, False),
])
def test_the_two_scorers_differ_where_the_paper_compares_its_own_way(dataset, text, gold, project, paper):
    assert score(dataset, text, gold) is project
    assert score_paper(dataset, text, gold) is paper


@pytest.mark.parametrize("dataset, text, gold", [
    ("gsm8k", "The answer is $7.50.", "7.5"),  # trailing zero and dollar
    ("gsm8k", "The answer is 1,250 dollars.", "1250"),
    ("svamp", "Half of 3 is 3/2. The answer is 3/2.", "1.5"),  # a fraction becomes its float
    ("math", "The answer is \\boxed{\\dfrac12}.", "\\frac{1}{2}"),
    ("math", "The answer is 90^\\circ.", "90"),
    ("math", "The answer is 3/4.", "\\frac{3}{4}"),
    ("math", "The answer is \\boxed{\\text{Monday}}.", "\\text{Monday}"),
    ("aqua", "The answer is (B), not C.", "B"),
    ("strategyqa", "The answer is True.", "yes"),
])
def test_the_paper_counts_these_right(dataset, text, gold):
    assert score_paper(dataset, text, gold)


@pytest.mark.parametrize("raw, written", [("7.50", "7.5"), ("12.0", "12"), ("12", "12"), ("1/2", "0.5"),
                                          ("-3/4", "-0.75"), ("1/0", "1/0"), ("3/", "3/"), ("0.0", "0")])
def test_numbers_are_written_as_the_evaluator_writes_them(raw, written):
    assert delete_extra_zero(raw) == written


@pytest.mark.parametrize("raw, cleaned", [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"), ("\\frac12", "\\frac{1}{2}"), ("\\frac1{72}", "\\frac{1}{72}"),
    ("\\sqrt3", "\\sqrt{3}"), ("k = 3", "3"), (".5", "0.5"), ("10\\%", "10"), ("5 \\text{ cm}", "5"),
    ("\\left( 1, 2 \\right)", "(1,2)"), ("$4$", "4"), ("3/4", "\\frac{3}{4}"), ("x/y", "x/y"),
])
def test_math_answers_are_cleaned_as_the_evaluator_cleans_them(raw, cleaned):
    assert strip_math(raw) == cleaned


def test_a_box_is_read_to_its_closing_brace():
    assert find_box("so \\boxed{\\frac{1}{2}} and more") == "\\frac{1}{2}"
    assert find_box("\\boxed 5$ and") == "5"
    assert find_box("\\boxed{1} then \\boxed{2}") == "2"


def test_no_answer_is_never_right():
    assert not paper_equal(None, "7", "math", "number")
    assert not paper_equal(None, "B", "commonsense", "choice")
