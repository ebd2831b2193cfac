"""`math`: MATH, competition problems with LaTeX answers.

Source: the official `train/` and `test/` folders, one JSON per problem (problem, level, type,
solution with `\\boxed{}`), or a jsonl / json list of the same records; gold is the last
`\\boxed{}` of the solution, the human rationale the solution. Split (7,500 / 5,000): the
official one. The hub copy has one config per subject.
"""

from __future__ import annotations

from study.core.datasets.descriptor import MATH, DatasetInfo, Source
from study.core.datasets.math_answers import boxed_answer
from study.core.datasets.problems import Problem
from study.core.datasets.sources import Record

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


def parse_math(record: Record, fallback_uid: str) -> Problem:
    answer = boxed_answer(str(record["solution"]))  # the MATH convention: the last \boxed{}, nothing else
    if answer is None:
        raise ValueError("field 'solution' has no \\boxed{} answer")
    uid = f"{record.get('type', 'math')}/{record['_file']}" if "_file" in record else fallback_uid
    return Problem(uid=str(record.get("unique_id", uid)), question=str(record["problem"]).strip(), answer=answer,
                   human_rationale=str(record["solution"]).strip())


DATASET = DatasetInfo(
    name="math",
    answers=MATH,
    source=Source(parse_math, train_names=("train", "train.jsonl", "train.json"),
                  test_names=("test", "test.jsonl", "test.json"), hub_id="EleutherAI/hendrycks_math",
                  hub_configs=MATH_SUBJECTS),
    release_names=("math",),
)
