"""`math`: MATH, competition problems with LaTeX answers.

Official split (7,500 / 5,000): the `train/` and `test/` folders in `<data_dir>/math`, one JSON
per problem (problem, level, type, solution with `\\boxed{}`), or a jsonl / json list of the same
records; gold is the last `\\boxed{}` of the solution, the human rationale the solution. The hub
copy has one config per subject.

Paper split (1,297 / 500), in `<data_dir>/paper/math`: `train_paper.json` (the release's
`math_human.json`: Prealgebra, Counting & Probability, Number Theory and Algebra problems, the
same records plus `output`, the gold answer) and `test_paper.json`, the paper's 500 test problems,
which it did not release: without them the paper split is refused, naming the file.
"""

from __future__ import annotations

from study.core.datasets.descriptor import MATH, DatasetInfo, Source
from study.core.datasets.math_answers import boxed_answer
from study.core.datasets.problems import Problem
from study.core.datasets.sources import Record, text_field

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


def parse_math(record: Record, fallback_uid: str) -> Problem:
    answer = boxed_answer(str(record["solution"]))  # the MATH convention: the last \boxed{}, nothing else
    if answer is None:
        raise ValueError("field 'solution' has no \\boxed{} answer")
    uid = f"{record.get('type', 'math')}/{record['_file']}" if "_file" in record else fallback_uid
    return Problem(uid=str(record.get("unique_id", uid)), question=text_field(record, "problem"), answer=answer,
                   human_rationale=str(record["solution"]).strip())


def parse_math_paper(record: Record, fallback_uid: str) -> Problem:
    """The paper's MATH rows: gold is `output` (the boxed answer of the solution, as written)."""
    gold = str(record["output"]).strip()  # some solutions box no answer ("There were $52$ prime dates")
    if not gold:
        raise ValueError("field 'output' (the gold answer) is empty")
    return Problem(uid=str(record.get("unique_id", fallback_uid)), question=text_field(record, "problem"),
                   answer=gold, human_rationale=str(record["solution"]).strip())


DATASET = DatasetInfo(
    name="math",
    answers=MATH,
    source=Source(parse_math, train_names=("train", "train.jsonl", "train.json"),
                  test_names=("test", "test.jsonl", "test.json"), hub_id="EleutherAI/hendrycks_math",
                  hub_configs=MATH_SUBJECTS, sizes=(7500, 5000)),
    release_names=("math",),
    paper=Source(parse_math_paper, train_names=("train_paper.json", "math_human.json"),
                 test_names=("test_paper.json",), folder="paper/math", sizes=(1297, 500),
                 missing_help="the paper did not release its 500 MATH test problems: put them there as "
                              "test_paper.json (MATH records with `output`, the gold answer), or set `split: official`"),
)
