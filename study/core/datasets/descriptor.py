"""What a data set declares: the descriptor each data-set module fills in once, and the shared
parts it picks from (answer kinds, the student's prompt template, split rules).

A data set is one module of this package (`svamp.py`, `gsm8k.py`, ...) holding one `DatasetInfo`
named `DATASET`, listed once in `registry.py`. Everything else reads the descriptor: the spec's
allowed names, loading and splitting, extraction and scoring, the teacher prompts' answer type
and the released-file importer's names. Per-dataset differences are fields here, never
`if dataset == ...` branches elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from study.core.datasets import answers, golds, math_answers
from study.core.datasets.paper_answers import Task
from study.core.datasets.problems import Choice, Problem
from study.core.datasets.sources import Record, RecordParser

AnswerType = Literal["number", "choice", "yes_no", "math"]
SplitName = Literal["paper", "official"]
Extractor = Callable[[str, tuple[Choice, ...]], str | None]
Scorer = Callable[[str | None, str], bool]
Splits = dict[str, list[Problem]]


@dataclass(frozen=True)
class AnswerKind:
    """How answers of one type are read from a text (`extract`), compared with gold (`equal`), and
    how a gold written in a file is read (`read_gold`: a choice gold may be `Option B` or the
    option's text, see `golds.py`; other kinds read a file's gold as their extractor does)."""

    type: AnswerType
    extract: Extractor
    equal: Scorer
    read_gold: Extractor


NUMBER = AnswerKind("number", answers.extract_number, answers.numbers_equal, answers.extract_number)
CHOICE = AnswerKind("choice", answers.extract_choice, answers.choices_equal, golds.read_choice_gold)
YES_NO = AnswerKind("yes_no", answers.extract_yes_no, answers.yes_no_equal, answers.extract_yes_no)
MATH = AnswerKind("math", math_answers.extract_math, math_answers.math_equal, golds.read_math_gold)

QUESTION_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Source:
    """The files of one split of a data set: candidate names (the first that exists is read), the
    record parser, how one file divides into both splits where the source has no test file, and the
    Hugging Face hub copy (its id, configs and split names, and how a hub row maps back to the
    source's own record shape).

    `folder` is where the files are by default, relative to the data folder (None: the data set's
    name). `sizes` are the (train, test) rows the source is documented to have (`cotstudy plan`
    shows them beside the rows found; None where a rule divides one file). Golds are read by the
    data set's answer kind (`AnswerKind.read_gold`). `missing_help` is added to the error when a file is not found (where to get it).
    """

    parse: RecordParser
    train_names: tuple[str, ...]
    test_names: tuple[str, ...]
    hub_id: str | None = None
    hub_configs: tuple[str | None, ...] = (None,)
    hub_splits: tuple[str, str] = ("train", "test")
    hub_row: Callable[[Record], Record] | None = None
    divide: Callable[[list[Problem]], Splits] | None = None
    folder: str | None = None
    sizes: tuple[int, int] | None = None
    missing_help: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """One data set, declared in one place.

    `source` is the data set's official split (its own files and hub copy); it is None for a
    data set generated from the spec's own settings (`arith`, from `DatasetSpec.arith`), which
    reads no files and has no `split:`. `paper` is the split the paper (arXiv 2502.18001) trained
    and tested on, where it is not the official one; None: the paper used `source`'s split.
    `official` is False for a data set with no official split (SVAMP: `source` is its one split,
    the paper's). `release_names` are the lower-case names released CoT files use for it as their
    first word (`SVAMP_ChatGPT_level3_ranked.json`).
    `task` is the paper's kind of task (math or commonsense), which its evaluator decodes and reads
    differently; it is not the answer type (AQuA is a choice task evaluated as math).
    """

    name: str
    answers: AnswerKind
    source: Source | None
    release_names: tuple[str, ...] = ()
    prompt_template: str = QUESTION_TEMPLATE
    paper: Source | None = None
    official: bool = True

    def split_source(self, split: SplitName) -> Source:
        """The files of the paper's or the official split (a data set read from files only)."""
        assert self.source is not None, f"{self.name} is generated: it has no files"
        return self.paper if split == "paper" and self.paper is not None else self.source

    def split_names(self) -> tuple[SplitName, ...]:
        """The `split:` values this data set accepts (none for a generated one)."""
        if self.source is None:
            return ()
        return ("paper", "official") if self.official else ("paper",)
    # the paper's kind of task: how its evaluator decodes and reads answers (evaluation.profile: paper)
    task: Task = "math"

    @property
    def answer_type(self) -> AnswerType:
        return self.answers.type

    @property
    def generated(self) -> bool:
        return self.source is None


def hashed_split(test_share: float) -> Callable[[list[Problem]], Splits]:
    """Divide by a hash of each uid: stable under reordering and across machines."""

    def divide(problems: list[Problem]) -> Splits:
        def in_test(problem: Problem) -> bool:
            return int(hashlib.sha256(problem.uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < test_share

        return {"train": [p for p in problems if not in_test(p)], "test": [p for p in problems if in_test(p)]}

    return divide
