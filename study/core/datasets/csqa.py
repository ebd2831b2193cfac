"""`csqa`: CommonsenseQA, five-option commonsense questions.

Source: `train_rand_split.jsonl` / `dev_rand_split.jsonl` (question.stem, question.choices,
answerKey); no human rationale. Split (9,741 / 1,221): train, and the official dev set as test
(the test labels are hidden).
"""

from __future__ import annotations

from study.core.datasets.descriptor import CHOICE, DatasetInfo, Source
from study.core.datasets.sources import Record, hub_choices, parse_qa_choices


def hub_commonsense_qa(row: Record) -> Record:
    """A `tau/commonsense_qa` row in the source's own shape, so that one record parser serves both."""
    return {"id": row["id"], "question": {"stem": row["question"], "choices": hub_choices(row)},
            "answerKey": row["answerKey"]}


DATASET = DatasetInfo(
    name="csqa",
    answers=CHOICE,
    task="commonsense",
    source=Source(parse_qa_choices, train_names=("train_rand_split.jsonl", "train.jsonl"),
                  test_names=("dev_rand_split.jsonl", "dev.jsonl", "validation.jsonl"), hub_id="tau/commonsense_qa",
                  hub_splits=("train", "validation"), hub_row=hub_commonsense_qa),
    release_names=("csqa", "cqa", "commonsenseqa", "ecqa"),
)
