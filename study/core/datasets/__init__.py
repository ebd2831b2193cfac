"""Data sets: a registry of loaders, prompt templates, answer extractors and scorers.

Public scoring API:
    extract_answer(dataset, text, choices=()) -> str | None   the answer a text gives, canonical
    score(dataset, text, gold, choices=()) -> bool            whether that answer equals gold
Per-dataset differences live in the `REGISTRY` table, not in branches. See `sources` for the
file formats and `splits` for how each data set is divided into train and test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from study.core.datasets import answers, math_answers
from study.core.datasets.arith import ArithSettings, generate_splits
from study.core.datasets.problems import Choice, Problem, Step
from study.core.datasets.registry import DatasetName, DatasetSpec
from study.core.datasets.settings import Frozen
from study.core.datasets.sources import DataError, normalize_text
from study.core.datasets.splits import SOURCES, Source, load_source_splits

__all__ = ["DatasetSpec", "DatasetName", "ArithSettings", "Frozen", "Problem", "Step", "Choice", "DataError", "DatasetInfo", "REGISTRY", "extract_answer", "score",
           "load_split", "question_prompt", "problem_text", "training_text", "normalize_text", "RATIONALE_SEPARATOR"]

AnswerType = Literal["number", "choice", "yes_no", "math"]
Extractor = Callable[[str, tuple[Choice, ...]], str | None]


@dataclass(frozen=True)
class DatasetInfo:
    answer_type: AnswerType
    prompt_template: str
    extract: Extractor
    equal: Callable[[str | None, str], bool]
    source: Source | None  # None: generated (arith)


QUESTION_TEMPLATE = "Question: {question}\nAnswer:"
NUMBER = {"answer_type": "number", "extract": answers.extract_number, "equal": answers.numbers_equal}
CHOICE = {"answer_type": "choice", "extract": answers.extract_choice, "equal": answers.choices_equal}
YES_NO = {"answer_type": "yes_no", "extract": answers.extract_yes_no, "equal": answers.yes_no_equal}
MATH = {"answer_type": "math", "extract": math_answers.extract_math, "equal": math_answers.math_equal}

REGISTRY: dict[str, DatasetInfo] = {
    "arith": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=None, **NUMBER),
    "svamp": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["svamp"], **NUMBER),
    "gsm8k": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["gsm8k"], **NUMBER),
    "aqua": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["aqua"], **CHOICE),
    "math": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["math"], **MATH),
    "csqa": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["csqa"], **CHOICE),
    "obqa": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["obqa"], **CHOICE),
    "strategyqa": DatasetInfo(prompt_template=QUESTION_TEMPLATE, source=SOURCES["strategyqa"], **YES_NO),
}


def dataset_info(dataset: str) -> DatasetInfo:
    try:
        return REGISTRY[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset '{dataset}'; known: {sorted(REGISTRY)}") from None


def extract_answer(dataset: str, text: str, choices: Sequence[Choice] = ()) -> str | None:
    """The answer `text` gives, in the data set's canonical form (None when it gives none).
    `choices` lets a multiple-choice answer be recognised by its option text."""
    return dataset_info(dataset).extract(text, tuple(choices))


def score(dataset: str, text: str, gold: str, choices: Sequence[Choice] = ()) -> bool:
    """Whether the answer `text` gives equals `gold` (False when no answer can be extracted)."""
    info = dataset_info(dataset)
    return info.equal(info.extract(text, tuple(choices)), gold)


RATIONALE_SEPARATOR = " "


def problem_text(problem: Problem) -> str:
    """The question as the student and the teacher read it: answer choices rendered as in the
    paper, `Answer choices: A: ..., B: ...`."""
    if not problem.choices:
        return problem.question
    rendered = ", ".join(f"{choice.label}: {choice.text}" for choice in problem.choices)
    return f"{problem.question}\nAnswer choices: {rendered}"


def question_prompt(dataset: str, question: str) -> str:
    """The prompt a student sees (in training and evaluation alike) for a `problem_text`."""
    return dataset_info(dataset).prompt_template.format(question=question)


def training_text(dataset: str, question: str, rationale: str) -> str:
    """A whole training sequence: the prompt, then the rationale after one space (the student
    learns to continue the prompt with it; the tokenizer is trained on exactly these texts)."""
    return f"{question_prompt(dataset, question)}{RATIONALE_SEPARATOR}{rationale}"


@lru_cache(maxsize=16)
def _splits(spec: DatasetSpec) -> dict[str, list[Problem]]:
    info = dataset_info(spec.name)
    if info.source is None:
        return generate_splits(spec.arith)
    return load_source_splits(spec, info.source, lambda text: info.extract(text, ()))


def load_split(spec: DatasetSpec, split: str) -> list[Problem]:
    """A data set's train or test problems, in the source's order (`DataError` names a bad file)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    return list(_splits(spec)[split])
