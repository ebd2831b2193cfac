"""`gsm8k`: GSM8K, grade-school math word problems (github.com/openai/grade-school-math).

Source: `train.jsonl` / `test.jsonl` (question, answer: the worked solution ending `#### N`);
the human rationale is the solution without its `<<...>>` calculator annotations.
Split (7,473 / 1,319): the official one, which is also the paper's.

The Socratic files of the same release (`train_socratic.jsonl`, `test_socratic.jsonl`: the hub's
`socratic` config) write every solution line as `sub-question ** sub-answer`. Read through
`train_file:` / `test_file:`, each problem carries those pairs as its `sub_questions` (what
`method: socratic` trains on with format `human`), and its human rationale is the sub-answers
alone, as in the main files.
"""

from __future__ import annotations

import re

from study.core.datasets.descriptor import NUMBER, DatasetInfo, Source
from study.core.datasets.problems import Problem, SubQuestion
from study.core.datasets.sources import Record, number_field, text_field

GSM8K_CALCULATOR = re.compile(r"<<[^>]*>>")
SOCRATIC_SEPARATOR = "**"


def parse_gsm8k(record: Record, fallback_uid: str) -> Problem:
    solution, separator, final = str(record["answer"]).rpartition("####")
    if not separator:
        raise ValueError("field 'answer' does not end with '#### N'")
    lines = [line.strip() for line in GSM8K_CALCULATOR.sub("", solution).splitlines() if line.strip()]
    sub_questions = socratic_lines(lines)
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=text_field(record, "question"),
        answer=number_field(final.strip(), "answer"),
        human_rationale=" ".join(s.answer for s in sub_questions) if sub_questions else " ".join(lines),
        sub_questions=sub_questions,
    )


def socratic_lines(lines: list[str]) -> tuple[SubQuestion, ...]:
    """The `sub-question ** sub-answer` pairs of a Socratic solution; () for a main-file solution
    (no line has the separator). A solution with some lines of each kind is an error; a
    sub-question with an empty sub-answer is left out (test row 1042 has one, asked again on its
    next line)."""
    pairs = [[part.strip() for part in line.split(SOCRATIC_SEPARATOR, 1)] for line in lines]
    socratic = [len(pair) == 2 for pair in pairs]
    if any(socratic) and not all(socratic):
        plain = lines[socratic.index(False)]
        raise ValueError(f"field 'answer' mixes Socratic lines ('sub-question ** sub-answer') with others: {plain!r}")
    return tuple(SubQuestion(question, answer) for question, answer in pairs if answer) if any(socratic) else ()


DATASET = DatasetInfo(
    name="gsm8k",
    answers=NUMBER,
    source=Source(parse_gsm8k, train_names=("train.jsonl",), test_names=("test.jsonl",), hub_id="openai/gsm8k",
                  hub_configs=("main",), sizes=(7473, 1319)),
    release_names=("gsm8k", "gsm"),
)
