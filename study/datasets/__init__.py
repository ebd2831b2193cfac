"""Data sets: a registry of loaders, prompt templates, answer extractors and scorers.

Public scoring API:
    extract_answer(dataset, text) -> str | None   the answer a text gives, canonicalised
    score(dataset, text, gold) -> bool            whether that answer equals the gold one
Per-dataset differences live in the `REGISTRY` table, not in branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from study.datasets.answers import extract_number, numbers_equal
from study.datasets.arith import generate_splits
from study.datasets.problems import Problem, Step
from study.spec import DatasetSpec

__all__ = ["Problem", "Step", "DatasetInfo", "REGISTRY", "extract_answer", "score", "load_split", "question_prompt",
           "training_text", "RATIONALE_SEPARATOR"]


@dataclass(frozen=True)
class DatasetInfo:
    answer_type: str
    prompt_template: str
    extract: Callable[[str], str | None]
    equal: Callable[[str | None, str], bool]


REGISTRY: dict[str, DatasetInfo] = {
    "arith": DatasetInfo(
        answer_type="number",
        prompt_template="Question: {question}\nAnswer:",
        extract=extract_number,
        equal=numbers_equal,
    ),
}


def _info(dataset: str) -> DatasetInfo:
    try:
        return REGISTRY[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset '{dataset}'; known: {sorted(REGISTRY)}") from None


def extract_answer(dataset: str, text: str) -> str | None:
    return _info(dataset).extract(text)


def score(dataset: str, text: str, gold: str) -> bool:
    info = _info(dataset)
    return info.equal(info.extract(text), gold)


RATIONALE_SEPARATOR = " "


def question_prompt(dataset: str, question: str) -> str:
    """The prompt a student sees (in training and evaluation alike)."""
    return _info(dataset).prompt_template.format(question=question)


def training_text(dataset: str, question: str, rationale: str) -> str:
    """A whole training sequence: the prompt, then the rationale after one space (the student
    learns to continue the prompt with it; the tokenizer is trained on exactly these texts)."""
    return f"{question_prompt(dataset, question)}{RATIONALE_SEPARATOR}{rationale}"


@lru_cache(maxsize=16)
def _splits(spec: DatasetSpec) -> dict[str, list[Problem]]:
    return generate_splits(spec.arith)


def load_split(spec: DatasetSpec, split: str) -> list[Problem]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    return list(_splits(spec)[split])
