"""Socratic CoT as data: decompositions read from text, and what each role reads and writes.

A decomposition is a problem's sub-questions, each with its sub-answer (`SubQuestion`); its last
sub-answer holds the final answer sentence ("The answer is X."). It comes from one of three
sources (`SocraticMethod.decomposition_source` in spec.py): a program teacher's structured
solution (study/core/program_render.py), the text of a `bsm` rationale (`parse_bsm`), or a
data set's own Socratic annotations (GSM8K's `sub-question ** sub-answer` lines,
study/core/datasets/gsm8k.py).

The two roles read the problem and the sub-questions and answers so far, one per line, then a
line naming the role:

    <problem>
    Sub-question: <q1>
    Sub-answer: <a1>
    Role: decomposer. Ask the next sub-question.        -> the decomposer writes q2

    <problem>
    Sub-question: <q1>
    Sub-answer: <a1>
    Sub-question: <q2>
    Role: solver. Answer the last sub-question.         -> the solver writes a2

That text is the "question" the student's template wraps (study/core/templates.py), in training
and evaluation alike; both variants (two_model, unified) read the same prompts, so they differ
only in whether one model or two learn them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from study.core.corpora import answer_sentence
from study.core.datasets import SubQuestion
from study.core.datasets.answers import ANSWER_PHRASE

DECOMPOSER, SOLVER = "decomposer", "solver"
ROLE_LINES = {DECOMPOSER: "Role: decomposer. Ask the next sub-question.",
              SOLVER: "Role: solver. Answer the last sub-question."}

# "Sub-question 2:" / "Sub-answer 2:" labels (the program teacher's bsm text, and teachers asked
# with the bsm prompt often write them); the released BSM files have none
BSM_LABEL = re.compile(r"\b(?:sub-question|sub-answer)\s*\d*\s*:\s*", re.IGNORECASE)
# after . ? ! and whitespace, or right after one of them that a capital follows, or a "?" that a
# number follows (a released row writes "...in the morning?There are 44 ... of 39 from 44?44 - 39")
SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+|(?<=[.!])(?=[A-Z])|(?<=\?)(?=[A-Z0-9$])")
ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "vs.", "e.g.", "i.e.")


def parse_bsm(text: str) -> tuple[SubQuestion, ...]:
    """The decomposition a `bsm` rationale writes: each sentence ending in "?" opens a sub-question
    (consecutive ones join), the sentences after it are its sub-answer. Text before the first
    sub-question is left out, and so is a last sub-question nobody answered; () when the text asks
    no question."""
    steps: list[list[str]] = []  # [question, answer] being built
    for sentence in _sentences(BSM_LABEL.sub("", text)):
        if sentence.endswith("?"):
            if steps and not steps[-1][1]:
                steps[-1][0] += f" {sentence}"
            else:
                steps.append([sentence, ""])
        elif steps:
            steps[-1][1] = f"{steps[-1][1]} {sentence}".strip()
    return tuple(SubQuestion(question, answer) for question, answer in steps if answer)


def _sentences(text: str) -> list[str]:
    """Sentences (`SENTENCE_BREAK`), but not split after a title such as "Mr."."""
    sentences: list[str] = []
    for piece in SENTENCE_BREAK.split(text.strip()):
        if sentences and sentences[-1].endswith(ABBREVIATIONS):
            sentences[-1] += f" {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def with_final_answer(steps: Sequence[SubQuestion], answer: str | None) -> tuple[SubQuestion, ...]:
    """The decomposition with the answer sentence ending its last sub-answer (added when that
    sub-answer has no answer phrase and an answer is known): the solver learns to close with it,
    and evaluation stops a problem once a sub-answer has it."""
    if not steps or answer is None or ANSWER_PHRASE.search(steps[-1].answer):
        return tuple(steps)
    last = steps[-1]
    closed = f"{last.answer.rstrip().rstrip('.')}. {answer_sentence(answer)}"
    return (*steps[:-1], SubQuestion(last.question, closed))


def _context(problem: str, history: Sequence[SubQuestion]) -> list[str]:
    lines = [problem]
    for step in history:
        lines += [f"Sub-question: {step.question}", f"Sub-answer: {step.answer}"]
    return lines


def decomposer_prompt(problem: str, history: Sequence[SubQuestion]) -> str:
    """What the decomposer reads before writing the next sub-question."""
    return "\n".join([*_context(problem, history), ROLE_LINES[DECOMPOSER]])


def solver_prompt(problem: str, history: Sequence[SubQuestion], question: str) -> str:
    """What the solver reads before answering `question`."""
    return "\n".join([*_context(problem, history), f"Sub-question: {question}", ROLE_LINES[SOLVER]])


def role_pairs(role: str, problem: str, steps: Sequence[SubQuestion]) -> list[tuple[str, str]]:
    """One (prompt, target) per sub-question of a decomposition, for the decomposer (the next
    sub-question) or the solver (its sub-answer)."""
    if role == DECOMPOSER:
        return [(decomposer_prompt(problem, steps[:k]), step.question) for k, step in enumerate(steps)]
    if role == SOLVER:
        return [(solver_prompt(problem, steps[:k], step.question), step.answer) for k, step in enumerate(steps)]
    raise ValueError(f"unknown Socratic role '{role}' (expected {DECOMPOSER} or {SOLVER})")


def one_line(text: str) -> str:
    """A generated sub-question or sub-answer on one line: the prompt layout is one per line."""
    return " ".join(text.split())
