"""Socratic CoT (`method: socratic`, Shridhar et al. 2023): a decomposer writes the next
sub-question, a solver answers it given the problem and the sub-questions and answers so far,
and the last answer is the final one.

Training: each corpus row's decomposition (study/core/socratic.py: from a program teacher's
solution steps, a `bsm` rationale, or GSM8K's Socratic annotations) gives one example per
sub-question and role: the decomposer learns the next sub-question, the solver its sub-answer,
each after a prompt that names its role. `two_model` trains a decomposer and a solver, in turn,
each for the cell's training budget; `unified` trains one model on both roles' examples. Rows
without a decomposition (a `bsm` text that asks no question) are left out and counted in the
cell's `dropped_examples`, as are examples longer than max_length.

Evaluation: turn by turn, batched across the problems still open, the decomposer asks and the
solver answers (greedy, up to EOS and `evaluation.max_new_tokens` per generation, transformers
engine whatever the profile); a problem closes once a sub-answer holds an answer sentence, when
the decomposer asks nothing, or after `max_turns`. Its last sub-answer is the output that both
scorers read. predictions.parquet adds `sub_questions`, `sub_answers` (lists) and `turns`;
`generated_tokens` counts both roles' tokens.

    # the CPU example: one two-model Socratic cell on arith, program teacher
    cotstudy run specs/socratic-demo.yaml
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from study.core.cells import CorpusKey
from study.core.datasets import DatasetSpec, Problem, SubQuestion, problem_text
from study.core.socratic import (
    DECOMPOSER,
    SOLVER,
    decomposer_prompt,
    one_line,
    parse_bsm,
    role_pairs,
    solver_prompt,
    with_final_answer,
)
from study.core.spec import EvalSpec, SocraticMethod, TrainSettings
from study.core.program_render import sub_questions
from trainables.data import EncodedCorpus, encode_corpus
from trainables.evaluate import (
    FINAL_ANSWER,
    Evaluation,
    cut_after_answer,
    scored_predictions,
    tokens_before_end,
    transformers_generate,
)
from trainables.step import TargetLoss
from trainables.templates import prompt_ids

UNIFIED = "unified"  # the one model of the unified variant, which plays both roles
Decomposition = tuple[SubQuestion, ...]


def corpus_decompositions(method: SocraticMethod, corpus: CorpusKey, rows: pd.DataFrame,
                          train_problems: list[Problem]) -> list[Decomposition]:
    """Each row's decomposition, from the source the method names for the corpus's format and
    teacher; () where a row has none. `train_problems`: the data set's train split (a program
    teacher's steps and the Socratic annotations are read from its problems)."""
    source = method.decomposition_source(corpus.format, corpus.teacher)
    if source == "bsm":
        return [with_final_answer(parse_bsm(text), answer if isinstance(answer, str) else None)
                for text, answer in zip(rows["rationale"], rows["answer"])]
    problems = {problem.uid: problem for problem in train_problems}
    if source == "solution_steps":
        return [sub_questions(problems[uid], corpus.granularity) for uid in rows["uid"]]
    if source == "annotations":
        return [with_final_answer(problems[uid].sub_questions, problems[uid].answer) for uid in rows["uid"]]
    raise ValueError(f"corpus {corpus.name}: method socratic has no decomposition for format '{corpus.format}'; "
                     f"it needs {method.admits_rule}")


@dataclass(frozen=True)
class Socratic:
    """`method: socratic` for trainables/methods.py. `train_split`: a data set's train problems (in
    a cell, the split stored in the study folder: study.core.stored_splits)."""

    settings: SocraticMethod
    train_split: Callable[[DatasetSpec], list[Problem]]

    @property
    def roles(self) -> tuple[str, ...]:
        return (DECOMPOSER, SOLVER) if self.settings.variant == "two_model" else (UNIFIED,)

    def examples(self, role: str, tokenizer: PreTrainedTokenizerBase, corpus: CorpusKey, rows: pd.DataFrame,
                 settings: TrainSettings, template: str = "plain") -> EncodedCorpus:
        decompositions = corpus_decompositions(self.settings, corpus, rows, self.train_split(corpus.dataset))
        if not any(decompositions):
            raise ValueError(f"corpus {corpus.name}: no row has a decomposition (sub-questions) to train on")
        played = (DECOMPOSER, SOLVER) if role == UNIFIED else (role,)
        pairs = [pair for question, steps in zip(rows["question"], decompositions)
                 for played_role in played for pair in role_pairs(played_role, question, steps)]
        encoded = encode_corpus(tokenizer, corpus.dataset.name, pd.DataFrame(pairs, columns=["question", "rationale"]),
                                settings.max_length, settings.overlong, template)
        undecomposed = sum(1 for steps in decompositions if not steps)
        return EncodedCorpus(encoded.examples, encoded.dropped + undecomposed, encoded.truncated)

    def loss_module(self, role: str, model: PreTrainedModel) -> TargetLoss:
        return TargetLoss(model)

    def evaluate(self, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, dataset: str,
                 problems: list[Problem], settings: EvalSpec, template: str = "plain") -> Evaluation:
        if self.settings.variant == "two_model":
            decomposer, solver = models[DECOMPOSER], models[SOLVER]
        else:
            decomposer = solver = models[UNIFIED]
        return evaluate_socratic(decomposer, solver, tokenizer, dataset, problems, settings, template,
                                 self.settings.max_turns)


@dataclass
class Dialogue:
    """One test problem's turns so far."""

    problem: Problem
    steps: list[SubQuestion]
    generated_tokens: int = 0
    open: bool = True


def evaluate_socratic(decomposer: PreTrainedModel, solver: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      dataset: str, problems: list[Problem], settings: EvalSpec, template: str,
                      max_turns: int) -> Evaluation:
    """Decomposer and solver in turn on every problem (see the module docstring), then scored."""
    started = time.monotonic()
    decomposer.eval()
    solver.eval()
    dialogues = [Dialogue(problem, []) for problem in problems]
    for _ in range(max_turns):
        active = [d for d in dialogues if d.open]
        if not active:
            break
        asked = _generate(decomposer, tokenizer, dataset, template, settings,
                          [decomposer_prompt(problem_text(d.problem), d.steps) for d in active])
        for dialogue, (question, count) in zip(active, asked):
            dialogue.generated_tokens += count
            dialogue.open = bool(question)  # a decomposer that asks nothing ends the problem
        asking = [(d, question) for d, (question, _) in zip(active, asked) if d.open]
        answered = _generate(solver, tokenizer, dataset, template, settings,
                             [solver_prompt(problem_text(d.problem), d.steps, q) for d, q in asking])
        for (dialogue, question), (answer, count) in zip(asking, answered):
            answer = cut_after_answer(answer)
            dialogue.steps.append(SubQuestion(question, answer))
            dialogue.generated_tokens += count
            dialogue.open = FINAL_ANSWER.search(answer) is None
    return Evaluation(predictions=_predictions(dataset, dialogues), eval_s=time.monotonic() - started,
                      engine="transformers")


def _generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: str, template: str,
              settings: EvalSpec, prompts: list[str]) -> list[tuple[str, int]]:
    """Each prompt's greedy continuation up to EOS, on one line, with its token count."""
    if not prompts:
        return []
    ids = [prompt_ids(tokenizer, template, dataset, prompt) for prompt in prompts]
    outputs = transformers_generate(model, tokenizer, ids, settings.max_new_tokens, settings.batch_size,
                                    stop_at_answer=False)
    kept = [tokens_before_end(tokenizer, row) for row in outputs]
    return [(one_line(tokenizer.decode(row, skip_special_tokens=True)), len(row)) for row in kept]


def _predictions(dataset: str, dialogues: list[Dialogue]) -> pd.DataFrame:
    """The scored last answers, with every problem's sub-questions, sub-answers and turns."""
    outputs = [d.steps[-1].answer if d.steps else "" for d in dialogues]
    predictions = scored_predictions(dataset, [d.problem for d in dialogues], outputs,
                                     [d.generated_tokens for d in dialogues])
    predictions["sub_questions"] = [[step.question for step in d.steps] for d in dialogues]
    predictions["sub_answers"] = [[step.answer for step in d.steps] for d in dialogues]
    predictions["turns"] = [len(d.steps) for d in dialogues]
    return predictions
