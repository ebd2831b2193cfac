"""Supervised fine-tuning (`method: sft`): one student learns the teacher's rationale after the
question prompt in the student's template (prompt tokens masked from the loss: trainables/data.py), and is evaluated by
greedy answers to the test questions in the same prompt (trainables/evaluate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from study.core.cells import CorpusKey
from study.core.datasets import Problem
from study.core.spec import EvalSpec, SftMethod, TrainSettings
from trainables.data import EncodedCorpus, encode_corpus
from trainables.evaluate import Evaluation, evaluate
from trainables.step import TargetLoss

STUDENT = "student"


@dataclass(frozen=True)
class Sft:
    settings: SftMethod
    roles: ClassVar[tuple[str, ...]] = (STUDENT,)

    def examples(self, role: str, tokenizer: PreTrainedTokenizerBase, corpus: CorpusKey, rows: pd.DataFrame,
                 settings: TrainSettings, template: str = "plain") -> EncodedCorpus:
        return encode_corpus(tokenizer, corpus.dataset.name, rows, settings.max_length, settings.overlong, template)

    def loss_module(self, role: str, model: PreTrainedModel) -> TargetLoss:
        return TargetLoss(model)

    def evaluate(self, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, dataset: str,
                 problems: list[Problem], settings: EvalSpec, template: str = "plain") -> Evaluation:
        return evaluate(models[STUDENT], tokenizer, dataset, problems, settings, template)
