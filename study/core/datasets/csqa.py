"""`csqa`: CommonsenseQA, five-option commonsense questions.

Official split (9,741 / 1,221): `train_rand_split.jsonl` / `dev_rand_split.jsonl` in
`<data_dir>/csqa` (question.stem, question.choices, answerKey); train, and the official dev set as
test (the test labels are hidden). No human rationale.

Paper split (9,740 / 1,221), in `<data_dir>/paper/csqa`: `train_paper.json` (the release's
`commonsenseQA_onlyans.json`: alpaca rows `Q: ... Answer choices: A: ..., B: ...`, gold in
`output`) and `test_paper.json` (the dev set as the paper's evaluation reads it: `... Answer
Choices:\nA. ...`, gold in `label`). Questions are read as the paper wrote them, choices included.
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
                  hub_splits=("train", "validation"), hub_row=hub_commonsense_qa, sizes=(9741, 1221)),
    release_names=("csqa", "cqa", "commonsenseqa", "ecqa"),
    paper=Source(parse_qa_choices, train_names=("train_paper.json", "commonsenseQA_onlyans.json"),
                 test_names=("test_paper.json",), folder="paper/csqa", sizes=(9740, 1221),
                 missing_help="train is the paper's commonsenseQA_onlyans.json, test its alpaca copy of the dev set"),
)
