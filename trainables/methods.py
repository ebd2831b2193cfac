"""Training methods: what the trainer (trainables/train.py) asks of a cell's method.

A method says
- its roles: the models a cell trains, each in turn (SFT: one, the student; Socratic two-model: a
  decomposer and a solver);
- its examples per role, from the corpus rows students train on;
- its loss module per role: a module around the role's model whose forward gives the batch's loss
  summed over target tokens, so `train_step`, packing and the per-token averaging of
  trainables/step.py serve every method unchanged; its parameter names are what checkpoints hold;
- its evaluation of the trained models on the test problems.

A new method: its settings model in study/core/spec.py (a member of `MethodSpec`, with its own
`kind`), one module beside trainables/sft.py, and one line in `METHODS`.

The methods are modules of this folder, not a sub-folder: they build on data.py, step.py and
evaluate.py here, and the trainer here builds on them; a sub-folder would import the folder
above it (the layering rule of the design: a folder never imports one above it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from study.core.cells import CorpusKey
from study.core.datasets import Problem
from study.core.spec import EvalSpec, MethodSpec, SftMethod, SocraticMethod, TrainSettings
from trainables.data import EncodedCorpus
from trainables.evaluate import Evaluation
from trainables.sft import Sft
from trainables.socratic import Socratic


class TrainingMethod(Protocol):
    @property
    def roles(self) -> tuple[str, ...]:
        """The models a cell trains, by role name, in the order they are trained."""
        ...

    def examples(self, role: str, tokenizer: PreTrainedTokenizerBase, corpus: CorpusKey, rows: pd.DataFrame,
                 settings: TrainSettings, template: str = "plain") -> EncodedCorpus:
        """The role's training examples from the rows of `corpus` students train on, each question
        in the student's `template` (study/core/templates.py)."""
        ...

    def loss_module(self, role: str, model: PreTrainedModel) -> torch.nn.Module:
        """The module whose forward(batch) is the role's loss summed over the batch's target tokens."""
        ...

    def evaluate(self, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, dataset: str,
                 problems: list[Problem], settings: EvalSpec, template: str = "plain") -> Evaluation:
        """The trained models (one per role) answering and scored on the test problems, each question
        in the student's `template`."""
        ...


METHODS: dict[type[Any], Callable[[Any], TrainingMethod]] = {
    SftMethod: Sft,
    SocraticMethod: Socratic,
}


def training_method(spec: MethodSpec) -> TrainingMethod:
    """The method of a cell's `method` settings."""
    return METHODS[type(spec)](spec)
