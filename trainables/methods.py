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
`kind`), one module beside trainables/sft.py, and one line in `METHODS` (a factory of the
settings and the cell's `MethodContext`, which a method needing only its settings ignores).

The methods are modules of this folder, not a sub-folder: they build on data.py, step.py and
evaluate.py here, and the trainer here builds on them; a sub-folder would import the folder
above it (the layering rule of the design: a folder never imports one above it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from study.core.cells import Cell, CorpusKey
from study.core.datasets import Problem
from study.core.spec import EvalSpec, KdMethod, MethodSpec, SftMethod, SocraticMethod, TrainSettings
from study.core.storage import StudyPaths
from study.core.stored_splits import stored_split
from trainables.data import EncodedCorpus
from trainables.evaluate import Evaluation
from trainables.kd import Kd
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


@dataclass(frozen=True)
class MethodContext:
    """Where a cell's method runs, for a method that needs more than its settings (kd: the study's
    stored teacher log-probs, the teacher cell's checkpoint, the device of an online teacher;
    socratic: the study's stored train split, whose problems hold the decompositions)."""

    cell: Cell
    paths: StudyPaths
    tokenizer: PreTrainedTokenizerBase
    device: torch.device


def _in_context(method: str, context: MethodContext | None) -> MethodContext:
    if context is None:
        raise ValueError(f"method {method} needs its cell's context (study paths, tokenizer, device)")
    return context


def _kd(settings: KdMethod, context: MethodContext | None) -> Kd:
    context = _in_context("kd", context)
    return Kd(settings, context.cell, context.paths, context.tokenizer, context.device)


def _socratic(settings: SocraticMethod, context: MethodContext | None) -> Socratic:
    return Socratic(settings, partial(stored_split, _in_context("socratic", context).paths, split="train"))


METHODS: dict[type[Any], Callable[[Any, MethodContext | None], TrainingMethod]] = {
    SftMethod: lambda settings, context: Sft(settings),
    KdMethod: _kd,
    SocraticMethod: _socratic,
}


def training_method(spec: MethodSpec, context: MethodContext | None = None) -> TrainingMethod:
    """The method of a cell's `method` settings, in the cell's context (Train workers give it)."""
    return METHODS[type(spec)](spec, context)
