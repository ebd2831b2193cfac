import pytest

from study.core.datasets import extract_answer, load_split, score
from study.core.datasets.arith import generate_splits
from study.core.spec import ArithSettings, DatasetSpec


def test_arith_is_deterministic_and_splits_are_disjoint():
    settings = ArithSettings(seed=7, n_train=120, n_test=40)
    first, again = generate_splits(settings), generate_splits(settings)
    assert [p.question for p in first["train"]] == [p.question for p in again["train"]]
    assert len(first["train"]) == 120 and len(first["test"]) == 40
    assert not {p.question for p in first["train"]} & {p.question for p in first["test"]}
    other = generate_splits(ArithSettings(seed=8, n_train=120, n_test=40))
    assert [p.question for p in other["train"]] != [p.question for p in first["train"]]


@pytest.mark.parametrize(("ops_min", "ops_max", "max_value"), [(2, 3, 40), (3, 4, 40), (1, 1, 10), (5, 6, 99)])
def test_arith_difficulty_is_respected(ops_min, ops_max, max_value):
    problems = generate_splits(ArithSettings(n_train=60, n_test=10, ops_min=ops_min, ops_max=ops_max,
                                             max_value=max_value))["train"]
    for problem in problems:
        assert ops_min <= len(problem.steps) <= ops_max
        for step in problem.steps:
            assert 0 <= step.left <= max_value and 0 <= step.result <= max_value
        # the chain of steps is consistent and ends at the answer
        assert all(a.result == b.left for a, b in zip(problem.steps, problem.steps[1:]))
        assert problem.answer == str(problem.steps[-1].result)
        assert str(problem.steps[0].left) in problem.question


def test_impossible_arith_settings_fail_clearly():
    with pytest.raises(ValueError, match="distinct problems"):
        generate_splits(ArithSettings(n_train=20000, n_test=10, ops_min=1, ops_max=1, max_value=5))


def test_load_split_names_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_split(DatasetSpec(name="arith"), "dev")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 3 + 4 = 7. The answer is 7.", "7"),
        ("The answer is 1,234.", "1234"),
        ("The answer is $5.", "5"),
        ("The answer is 145.0", "145"),
        ("The answer is 12. Then 3 + 4 = 7.", "12"),  # the convention beats the last number
        ("he has 3 then 9 apples", "9"),  # else the last number
        ("The answer is 3/4", "0.75"),
        ("The answer is -2.", "-2"),
        ("no digits here", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer("arith", text) == expected


def test_score_is_numeric_equivalence():
    assert score("arith", "The answer is 145.0", "145")
    assert score("arith", "The answer is 1,000", "1000")
    assert not score("arith", "The answer is 14", "41")
    assert not score("arith", "I do not know", "3")


def test_unknown_dataset_in_scoring_api():
    with pytest.raises(ValueError, match="unknown dataset 'svamp2'"):
        score("svamp2", "The answer is 1", "1")
