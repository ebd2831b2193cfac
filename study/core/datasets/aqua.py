"""`aqua`: AQuA-RAT, algebra word problems with five options (github.com/google-deepmind/AQuA).

Source: `train.json` / `test.json`, JSON lines despite the extension (question, options like
`"A)21"`, rationale, correct); the human rationale is the rationale. Split (97,467 / 254): the
official one.
"""

from __future__ import annotations

import re

from study.core.datasets.descriptor import CHOICE, DatasetInfo, Source
from study.core.datasets.problems import Choice, Problem
from study.core.datasets.sources import Record, choice_label

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
        question=str(record["question"]).strip(),
        answer=choice_label(record["correct"], choices, "correct"),
        choices=tuple(choices),
        human_rationale=str(record.get("rationale", "")).strip() or None,
    )


DATASET = DatasetInfo(
    name="aqua",
    answers=CHOICE,
    source=Source(parse_aqua, train_names=("train.json", "train.jsonl"), test_names=("test.json", "test.jsonl"),
                  hub_id="deepmind/aqua_rat", hub_configs=("raw",)),
    release_names=("aqua", "auqa"),
)
