"""`obqa`: OpenBookQA, four-option science questions.

Official split (4,957 / 500): the Main `train.jsonl` / `test.jsonl` in `<data_dir>/obqa`
(question.stem, question.choices, answerKey; the additional files add `fact1`, the human rationale).

Paper split (4,957 / 500; 5 training questions repeat), in `<data_dir>/paper/obqa`:
`train_paper.json` (the release's `openbookQA_onlyans.json`) and `test_paper.json` (its
`openbookQA_test.json`), alpaca rows `Q: ... Answer choices: A: ..., B: ...`, read as written.
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
                  hub_configs=("additional",), hub_row=hub_openbookqa, sizes=(4957, 500)),
    release_names=("obqa", "openbookqa"),
    paper=Source(parse_qa_choices, train_names=("train_paper.json", "openbookQA_onlyans.json"),
                 test_names=("test_paper.json", "openbookQA_test.json"), folder="paper/obqa", sizes=(4957, 500),
                 missing_help="train is the paper's openbookQA_onlyans.json, test its openbookQA_test.json"),
)
