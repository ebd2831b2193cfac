"""Evaluation profiles, as data: how a cell's student is decoded (`evaluation.profile`).

    robust   greedy, `evaluation.max_new_tokens`, a row stops once its answer sentence is complete
             and the output is cut after it (trainables/evaluate.py); the model's own dtype
    paper    the paper's evaluator: per kind of task (the data set's `task`), beam search of width 5
             at temperature 0 with 640 new tokens (commonsense) or greedy with 1024 (math); a row
             or a beam stops at the first of the paper's stop strings, and is cut before it; bf16
             on a GPU

Both profiles score each output twice: `accuracy` by the project's scorer, `accuracy_paper` by
the paper's answer rules (study/core/datasets/paper_answers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from study.core.datasets import dataset_info

Profile = Literal["paper", "robust"]

# the stop strings of the paper's evaluator (`run_reasoning.py`)
PAPER_STOP_STRINGS = ("USER:", "ASSISTANT:", "### Instruction:", "Response:", "<start_of_turn>", "[INST]",
                      "\n\nProblem", "\nProblem", "Problem:", "<|eot_id|>", "####")


@dataclass(frozen=True)
class Decoding:
    """How one data set's test questions are decoded under a profile."""

    beams: int  # 1: greedy
    max_new_tokens: int
    stop_strings: tuple[str, ...]  # generation stops at the first of these, the output is cut before it
    stop_at_answer: bool  # stop a row once its answer sentence is complete, cut the output after it
    bf16_on_gpu: bool


PAPER_DECODING = {
    "commonsense": Decoding(beams=5, max_new_tokens=640, stop_strings=PAPER_STOP_STRINGS, stop_at_answer=False,
                            bf16_on_gpu=True),
    "math": Decoding(beams=1, max_new_tokens=1024, stop_strings=PAPER_STOP_STRINGS, stop_at_answer=False,
                     bf16_on_gpu=True),
}


def decoding(profile: Profile, dataset: str, max_new_tokens: int) -> Decoding:
    """The decoding of `dataset`'s test questions under `profile` (`max_new_tokens`: the spec's
    `evaluation.max_new_tokens`, which the robust profile uses)."""
    if profile == "paper":
        return PAPER_DECODING[dataset_info(dataset).task]
    return Decoding(beams=1, max_new_tokens=max_new_tokens, stop_strings=(), stop_at_answer=True, bf16_on_gpu=False)
