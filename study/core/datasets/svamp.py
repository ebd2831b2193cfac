"""`svamp`: SVAMP, 1,000 arithmetic word problems (github.com/arkilpatel/SVAMP).

Source: `SVAMP.json`, a JSON list of {ID, Body, Question, Equation, Answer, Type}; the human
rationale is the equation. SVAMP has no official split; its one split is the paper's (700 /
300): train = the 700 problems whose questions the paper released teacher CoT for (their
SVAMP.json IDs ship in `split_ids/svamp_train_ids.txt`), test = the other 300.
"""

from __future__ import annotations

from importlib import resources

from study.core.datasets.descriptor import NUMBER, DatasetInfo, Source, Splits
from study.core.datasets.problems import Problem
from study.core.datasets.sources import DataError, Record, number_field, text_field


def parse_svamp(record: Record, fallback_uid: str) -> Problem:
    answer = number_field(record["Answer"], "Answer")
    return Problem(
        uid=str(record.get("ID", fallback_uid)),
        question=" ".join(f"{text_field(record, 'Body')} {text_field(record, 'Question')}".split()),
        answer=answer,
        human_rationale=f"{_strip_outer_parens(record['Equation'])} = {record['Answer']}",
    )


def _strip_outer_parens(expression: str) -> str:
    expression = expression.strip()
    if expression.startswith("(") and expression.endswith(")") and _balanced(expression[1:-1]):
        return expression[1:-1].strip()
    return expression


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def svamp_paper_split(problems: list[Problem]) -> Splits:
    listing = resources.files("study.core.datasets").joinpath("split_ids/svamp_train_ids.txt").read_text()
    train_ids = {line.strip() for line in listing.splitlines() if line.strip() and not line.startswith("#")}
    train = [p for p in problems if p.uid in train_ids]
    if len(train) != len(train_ids):
        raise DataError(f"SVAMP: found {len(train)} of the paper's {len(train_ids)} training IDs; is this SVAMP.json?")
    return {"train": train, "test": [p for p in problems if p.uid not in train_ids]}


DATASET = DatasetInfo(
    name="svamp",
    answers=NUMBER,
    source=Source(parse_svamp, train_names=("SVAMP.json",), test_names=(), hub_id="ChilleD/SVAMP",
                  divide=svamp_paper_split, sizes=(700, 300)),
    release_names=("svamp",),
    official=False,
)
