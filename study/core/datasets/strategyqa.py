"""`strategyqa`: StrategyQA, yes / no questions that need implicit reasoning.

Official split: `strategyqa_train.json` in `<data_dir>/strategyqa`, a JSON list (qid, question,
answer true/false, facts); the human rationale is the facts. The official test labels are
hidden, so the 2,290 labelled questions are divided 1,603 / 687 (70 / 30) by a hash of each qid,
unless a test file is given.

Paper split (2,000 / 290, disjoint), in `<data_dir>/paper/strategyqa`: `train_paper.json` (the
release's `strategyQA_onlyans.json`, gold `True` / `False` in `output`) and `test_paper.json`
(its `strategyQA_test.json`, gold in `label`), alpaca rows.
"""

from __future__ import annotations

from study.core.datasets.descriptor import YES_NO, DatasetInfo, Source, hashed_split
from study.core.datasets.problems import Problem
from study.core.datasets.sources import Record, text_field


def parse_strategyqa(record: Record, fallback_uid: str) -> Problem:
    answer = record["answer"]
    if not isinstance(answer, bool):
        raise ValueError(f"field 'answer' must be true or false, got {answer!r}")
    facts = [str(fact).strip() for fact in record.get("facts", [])]
    return Problem(
        uid=str(record.get("qid", fallback_uid)),
        question=text_field(record, "question"),
        answer="yes" if answer else "no",
        human_rationale=" ".join(facts) or None,
    )


DATASET = DatasetInfo(
    name="strategyqa",
    answers=YES_NO,
    task="commonsense",
    source=Source(parse_strategyqa, train_names=("strategyqa_train.json", "train.json"), test_names=("test.json",),
                  hub_id="ChilleD/StrategyQA", divide=hashed_split(0.3)),
    release_names=("strategyqa", "stqa"),
    paper=Source(parse_strategyqa, train_names=("train_paper.json", "strategyQA_onlyans.json"),
                 test_names=("test_paper.json", "strategyQA_test.json"), folder="paper/strategyqa",
                 sizes=(2000, 290),
                 missing_help="train is the paper's strategyQA_onlyans.json, test its strategyQA_test.json"),
)
