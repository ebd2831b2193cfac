"""Data sets: one module per data set, registered once, and the public loading and scoring API.

Public API:
    load_split(spec, split) -> list[Problem]                  a data set's train or test problems
    extract_answer(dataset, text, choices=()) -> str | None   the answer a text gives, canonical
    read_gold(dataset, text, choices=()) -> str | None        the gold a file writes (`Option B` -> B)
    score(dataset, text, gold, choices=()) -> bool            whether that answer equals gold
    extract_paper_answer / score_paper                        the same by the paper's evaluator's rules
    problem_text / question_prompt / training_text            what the student and teacher read
    dataset_info(dataset) -> DatasetInfo                      a data set's descriptor

Layout: `registry.py` lists the data sets; each is one module (`arith`, `svamp`, `gsm8k`, `aqua`,
`math`, `csqa`, `obqa`, `strategyqa`) declaring its `DatasetInfo` (`descriptor.py`): record
parser, files and split rule of its official split and of the paper's (`DatasetSpec.split`),
hub mapping, answer kind (extractor, scorer, gold reader), released-file names. Shared parts:
`problems` (the record), `answers` / `math_answers` (extractors and scorers), `golds` (choice
golds as files write them), `sources` (file formats, shared parsers), `splits` (files to train /
test).
Per-dataset differences live in the descriptors, not in branches.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from study.core.datasets.arith import ArithSettings, generate_splits
from study.core.datasets.descriptor import AnswerType, DatasetInfo
from study.core.datasets.golds import inline_choices
from study.core.datasets.paper_answers import paper_answer, paper_equal
from study.core.datasets.problems import Choice, Problem, Step, SubQuestion
from study.core.datasets.registry import (
    DATASET_NAMES,
    DATASETS,
    REGISTRY,
    RELEASE_ALIASES,
    DatasetName,
    DatasetSpec,
    dataset_info,
)
from study.core.datasets.settings import Frozen
from study.core.datasets.sources import DataError, normalize_text
from study.core.datasets.splits import load_source_splits

__all__ = ["DatasetSpec", "DatasetName", "ArithSettings", "Frozen", "Problem", "Step", "SubQuestion", "Choice", "DataError",
           "DatasetInfo", "AnswerType", "DATASETS", "DATASET_NAMES", "REGISTRY", "RELEASE_ALIASES", "dataset_info",
           "extract_answer", "read_gold", "inline_choices", "score", "extract_paper_answer", "score_paper", "load_split",
           "question_prompt", "problem_text", "training_text",
           "normalize_text", "RATIONALE_SEPARATOR"]


def extract_answer(dataset: str, text: str, choices: Sequence[Choice] = ()) -> str | None:
    """The answer `text` gives, in the data set's canonical form (None when it gives none).
    `choices` lets a multiple-choice answer be recognised by its option text."""
    return dataset_info(dataset).answers.extract(text, tuple(choices))


def read_gold(dataset: str, text: str, choices: Sequence[Choice] = ()) -> str | None:
    """The gold answer a file writes, canonical (None when it cannot be read: the caller counts
    and reports it). A choice gold may be `B.`, `(B)`, `Option B`, a rationale ending `Answer C`,
    or an option's text (mapped to its label through `choices`)."""
    return dataset_info(dataset).answers.read_gold(text, tuple(choices))


def score(dataset: str, text: str, gold: str, choices: Sequence[Choice] = ()) -> bool:
    """Whether the answer `text` gives equals `gold` (False when no answer can be extracted)."""
    answers = dataset_info(dataset).answers
    return answers.equal(answers.extract(text, tuple(choices)), gold)


def extract_paper_answer(dataset: str, text: str) -> str | None:
    """The answer the paper's evaluator reads from `text` (`paper_answers.py`; None when none)."""
    info = dataset_info(dataset)
    return paper_answer(text, info.task, info.answer_type)


def score_paper(dataset: str, text: str, gold: str) -> bool:
    """Whether the paper's evaluator counts `text` right: the answer it reads, compared with `gold`
    its own way (string equality after its cleaning; `paper_answers.py`)."""
    info = dataset_info(dataset)
    return paper_equal(extract_paper_answer(dataset, text), gold, info.task, info.answer_type)


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
    if info.source is None:  # generated: the one data set with settings of its own in the spec
        return generate_splits(spec.arith)
    return load_source_splits(spec, info.split_source(spec.split), info.answers.read_gold)


def load_split(spec: DatasetSpec, split: str) -> list[Problem]:
    """A data set's train or test problems, in the source's order (`DataError` names a bad file)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    return list(_splits(spec)[split])
