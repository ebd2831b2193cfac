"""The paper's answer rules (its evaluator: `run_reasoning.py` for commonsense tasks, the
MAmmoTH-derived `answer_clean` for math tasks), as a second reading of the same outputs.

- commonsense (`first`): the first "The answer is" followed at once by a label (A-E, True or
  False, case as written); nothing else counts, and no phrase means no answer.
- math (`last`): the text after the last "The answer is"; its first number (number tasks), its
  first bare letter A-E (choice tasks) or its box or the value after its last `=` (MATH). With no
  phrase, the text's last number (last letter, last box).

What is read is compared with gold by the data set's own equality (`answers.py`,
`math_answers.py`), so the two accuracies differ only in which answer a text is taken to give.
"""

from __future__ import annotations

import re
from typing import Literal

from study.core.datasets.math_answers import last_boxed

AnswerRule = Literal["first", "last"]
Task = Literal["math", "commonsense"]
# the paper's rule per kind of task
ANSWER_RULES: dict[str, AnswerRule] = {"commonsense": "first", "math": "last"}

TRIGGER = re.compile(r"[Tt]he answer is")
COMMONSENSE_LABEL = re.compile(r"[Tt]he answer is ([A-E]|True|False)")
NUMBER = re.compile(r"-?\d+/?\.?\d*")
LETTER = re.compile(r"\b([A-E])\b")


def paper_answer(text: str, task: Task, answer_type: str) -> str | None:
    """The answer the paper's evaluator reads from `text` (None when it reads none)."""
    if ANSWER_RULES[task] == "first":
        found = COMMONSENSE_LABEL.search(text)
        return found.group(1) if found else None
    parts = TRIGGER.split(text)
    flagged = len(parts) > 1
    claim = parts[-1].strip("\n").rstrip(".").rstrip("/").strip(" ")
    return _math_task_answer(claim, answer_type, flagged)


def _math_task_answer(claim: str, answer_type: str, flagged: bool) -> str | None:
    """After the phrase the first candidate counts, without it the last (`answer_clean`)."""
    if answer_type == "math":
        return _math_answer(claim, flagged)
    if answer_type == "choice":
        found = LETTER.findall(claim.upper())
    else:
        found = NUMBER.findall(claim.replace(",", ""))
    if not found:
        return None
    return (found[0] if flagged else found[-1]).rstrip(".").rstrip("/")


def _math_answer(claim: str, flagged: bool) -> str | None:
    if "boxed" in claim:
        return last_boxed(claim)
    if flagged:
        value = claim.split("=")[-1].strip()
        return value.split(" ")[0] if re.match(r"[\d.]+\s\D+$", value) else value or None
    found = NUMBER.findall(claim)
    return found[-1] if found else None
