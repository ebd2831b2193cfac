"""The problem record every data set loads into."""

from __future__ import annotations

from dataclasses import dataclass

OPERATOR_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@dataclass(frozen=True)
class Step:
    """One operation of a structured solution: `left op right = result`.

    `event` is the clause of the story that causes it ("buys 5 more"), `reason` why that clause
    means this operation ("buying more adds to what Tom has").
    """

    left: int
    op: str
    right: int
    result: int
    event: str
    reason: str

    @property
    def equation(self) -> str:
        return f"{self.left} {OPERATOR_SYMBOLS[self.op]} {self.right} = {self.result}"


@dataclass(frozen=True)
class Choice:
    """One answer option of a multiple-choice problem, e.g. Choice("B", "a river bank")."""

    label: str
    text: str


@dataclass(frozen=True)
class SubQuestion:
    """One step of a decomposition (Socratic CoT): a sub-question and its answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class Problem:
    """One problem as every data set loads it.

    `question` is the full question text the student reads before the template adds the answer
    choices; `answer` is the gold answer in the data set's answer type (a number, a choice letter,
    "yes"/"no", or a math expression). `steps`, `subject` and `item` exist only for `arith`;
    `sub_questions` only where the source annotates a decomposition (GSM8K's Socratic files).
    """

    uid: str
    question: str
    answer: str
    choices: tuple[Choice, ...] = ()
    steps: tuple[Step, ...] = ()
    subject: str = ""
    item: str = ""
    human_rationale: str | None = None
    sub_questions: tuple[SubQuestion, ...] = ()
