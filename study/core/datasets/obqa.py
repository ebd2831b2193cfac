"""`obqa`: OpenBookQA, four-option science questions.

Source: the Main `train.jsonl` / `test.jsonl` (question.stem, question.choices, answerKey; the
additional files add `fact1`, the human rationale). Split (4,957 / 500): the official one.
"""

from __future__ import annotations

from study.core.datasets.descriptor import CHOICE, DatasetInfo, Source
from study.core.datasets.sources import Record, hub_choices, parse_qa_choices


def hub_openbookqa(row: Record) -> Record:
    """An `allenai/openbookqa` row in the source's own shape, so that one record parser serves both."""
    return {"id": row["id"], "question": {"stem": row["question_stem"], "choices": hub_choices(row)},
            "answerKey": row["answerKey"], "fact1": row.get("fact1")}


DATASET = DatasetInfo(
    name="obqa",
    answers=CHOICE,
    task="commonsense",
    source=Source(parse_qa_choices, train_names=("train.jsonl", "train_complete.jsonl"),
                  test_names=("test.jsonl", "test_complete.jsonl"), hub_id="allenai/openbookqa",
                  hub_configs=("additional",), hub_row=hub_openbookqa),
    release_names=("obqa", "openbookqa"),
)
