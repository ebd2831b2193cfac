"""`aqua`: AQuA-RAT, algebra word problems with five options (github.com/google-deepmind/AQuA).

Official split (97,467 / 254): `train.json` / `test.json` in `<data_dir>/aqua`, JSON lines
despite the extension (question, options like `"A)21"`, rationale, correct); the human rationale
is the rationale.

Paper split (6,940 / 254; the paper's README says 6.1k), in `<data_dir>/paper/aqua`: train is the
paper's answer-only file (`train_paper.json`, the release's `aqua_only_ans.json`: alpaca rows,
the options inside the question as `Answer Choices: (A) ... (E) ...`), test AQuA-RAT's official
`test.json`, its options written into the question the same way. About 2,000 of the paper's golds
are not a bare letter (`(B)`, `Option B`, the option's text, a rationale ending `Answer C`): the
choice gold reader (golds.py) reads a letter from them; the 18 it cannot read unambiguously are left
out and counted in a warning line, so the train split has 6,922 rows.
"""

from __future__ import annotations

import re

from study.core.datasets.descriptor import CHOICE, DatasetInfo, Source
from study.core.datasets.problems import Choice, Problem
from study.core.datasets.sources import Record, choice_label, text_field

AQUA_OPTION = re.compile(r"^\s*\(?([A-Ea-e])\s*[):]\s*(.*)$", re.DOTALL)


def parse_aqua(record: Record, fallback_uid: str) -> Problem:
    choices = []
    for option in record["options"]:
        match = AQUA_OPTION.match(str(option))
        if match is None:
            raise ValueError(f"option {option!r} is not like 'A)text'")
        choices.append(Choice(match.group(1).upper(), match.group(2).strip()))
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=text_field(record, "question"),
        answer=choice_label(record["correct"], choices, "correct"),
        choices=tuple(choices),
        human_rationale=str(record.get("rationale", "")).strip() or None,
    )


def parse_aqua_paper(record: Record, fallback_uid: str) -> Problem:
    """An official AQuA row as the paper's training rows read: options inside the question."""
    problem = parse_aqua(record, fallback_uid)
    options = " ".join(f"({choice.label}) {choice.text}" for choice in problem.choices)
    return Problem(uid=problem.uid, question=f"{problem.question} Answer Choices: {options}", answer=problem.answer,
                   human_rationale=problem.human_rationale)


DATASET = DatasetInfo(
    name="aqua",
    answers=CHOICE,
    source=Source(parse_aqua, train_names=("train.json", "train.jsonl"), test_names=("test.json", "test.jsonl"),
                  hub_id="deepmind/aqua_rat", hub_configs=("raw",), sizes=(97467, 254)),
    release_names=("aqua", "auqa"),
    paper=Source(parse_aqua_paper, train_names=("train_paper.json", "aqua_only_ans.json"),
                 test_names=("test_paper.json", "test.json"), folder="paper/aqua", sizes=(6940, 254),
                 missing_help="train is the paper's aqua_only_ans.json, test AQuA-RAT's official test.json"),
)
