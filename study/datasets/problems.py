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
class Problem:
    uid: str
    question: str
    answer: str
    steps: tuple[Step, ...] = ()
    subject: str = ""
    item: str = ""
    human_rationale: str | None = None
