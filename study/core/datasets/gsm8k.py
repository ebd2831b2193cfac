"""`gsm8k`: GSM8K, grade-school math word problems (github.com/openai/grade-school-math).

Source: `train.jsonl` / `test.jsonl` (question, answer: the worked solution ending `#### N`);
the human rationale is the solution without its `<<...>>` calculator annotations.
Split (7,473 / 1,319): the official one, which is also the paper's.
"""

from __future__ import annotations

import re

from study.core.datasets.descriptor import NUMBER, DatasetInfo, Source
from study.core.datasets.problems import Problem
from study.core.datasets.sources import Record, number_field, text_field

GSM8K_CALCULATOR = re.compile(r"<<[^>]*>>")


def parse_gsm8k(record: Record, fallback_uid: str) -> Problem:
    solution, separator, final = str(record["answer"]).rpartition("####")
    if not separator:
        raise ValueError("field 'answer' does not end with '#### N'")
    steps = [line.strip() for line in GSM8K_CALCULATOR.sub("", solution).splitlines() if line.strip()]
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=text_field(record, "question"),
        answer=number_field(final.strip(), "answer"),
        human_rationale=" ".join(steps),
    )


DATASET = DatasetInfo(
    name="gsm8k",
    answers=NUMBER,
    source=Source(parse_gsm8k, train_names=("train.jsonl",), test_names=("test.jsonl",), hub_id="openai/gsm8k",
                  hub_configs=("main",), sizes=(7473, 1319)),
    release_names=("gsm8k", "gsm"),
)
