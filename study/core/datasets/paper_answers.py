"""The paper's answer rules (its evaluator: `run_reasoning.py` for commonsense tasks, the
MAmmoTH-derived `utils.py` for math tasks: `answer_clean`, then `compare_answer_with_groundtruth`),
as a second reading of the same outputs.

Reading (`paper_answer`):
- commonsense (`first`): the first "The answer is" followed at once by a label (A-E, True or
  False, case as written); nothing else counts, and no phrase means no answer.
- math (`last`): when one of the phrases ("The answer is", "the answer is") occurs twice, only
  the text before the first blank line is read (the evaluator takes that for few-shot echo).
  Then the text after the last phrase: its first number (number tasks), its first bare letter
  A-J (choice tasks), or its box or the value after its last `=` (MATH). With no phrase: the
  last number (last letter, last box). Numbers are written as the evaluator writes them
  (`delete_extra_zero`: `7.50` -> `7.5`, `1/2` -> `0.5`), MATH answers after its `_strip_string`.

Comparing (`paper_equal`), as the evaluator does, with no tolerance and no algebra:
- commonsense: the label equals the gold label as the paper's test files write it (a letter;
  `True` / `False` for the project's `yes` / `no`);
- number tasks: the same string after `delete_extra_zero` of both, so `0.3333` is not `1/3`
  and `7.0001` is not `7` (the project's scorer allows 1e-6);
- choice tasks: letter equality;
- MATH: case-insensitive string equality after `_strip_string` of both (`\\text{` dropped), so
  `0.5` is not `\\frac{1}{2}` and `x+1` is not `1+x` (the project's scorer compares values).
  The gold is cleaned like the answer: MAmmoTH's MATH golds are `_strip_string` of the box.

Not reproduced: the AQuA evaluator's fallback that asks the model which option is closest when
no letter is read (here no letter is no answer).
"""

from __future__ import annotations

import re
from typing import Literal

AnswerRule = Literal["first", "last"]
Task = Literal["math", "commonsense"]
# the paper's rule per kind of task
ANSWER_RULES: dict[str, AnswerRule] = {"commonsense": "first", "math": "last"}

TRIGGERS = ("The answer is", "the answer is")
TRIGGER = re.compile("|".join(TRIGGERS))
COMMONSENSE_LABEL = re.compile(r"[Tt]he answer is ([A-E]|True|False)")
NUMBER = re.compile(r"-?\d+/?\.?\d*")
MATH_NUMBER = re.compile(r"-?\d*\.?\d+")
LETTER = re.compile(r"\b([A-J])\b")
VALUE_AND_WORDS = re.compile(r"[\d.]+\s\D+$")
# the paper's test files write StrategyQA's labels as True / False
PAPER_LABELS = {"yes": "True", "no": "False"}


# ---------------------------------------------------------------- reading

def paper_answer(text: str, task: Task, answer_type: str) -> str | None:
    """The answer the paper's evaluator reads from `text` (None when it reads none)."""
    if ANSWER_RULES[task] == "first":
        found = COMMONSENSE_LABEL.search(text)
        return found.group(1) if found else None
    text = text.strip("\n")
    if any(text.count(trigger) > 1 for trigger in TRIGGERS):
        text = text.split("\n\n")[0]
    parts = TRIGGER.split(text)
    flagged = len(parts) > 1
    claim = parts[-1].strip("\n").rstrip(".").rstrip("/").strip(" ")
    answer = _math_task_answer(claim, answer_type, flagged)
    if answer is None:
        return None
    return answer.rstrip(".").rstrip("/") or None  # the evaluator's last cut


def _math_task_answer(claim: str, answer_type: str, flagged: bool) -> str | None:
    """After the phrase the first candidate counts, without it the last (`answer_clean`)."""
    if answer_type == "math":
        return _math_answer(claim, flagged)
    if answer_type == "choice":
        found = LETTER.findall(claim.upper())
    else:
        found = [delete_extra_zero(n) for n in NUMBER.findall(claim.replace(",", ""))]
    if not found:
        return None
    return found[0] if flagged else found[-1]


def _math_answer(claim: str, flagged: bool) -> str:
    if "boxed" in claim:
        value = find_box(claim)
    elif flagged:
        value = claim.split("=")[-1].strip()
        if VALUE_AND_WORDS.match(value):  # "180 miles": the number
            value = value.split(" ")[0]
    else:
        numbers = MATH_NUMBER.findall(claim)
        value = numbers[-1] if numbers else ""
    return strip_math(value)


def find_box(text: str) -> str:
    """The content of the last `boxed{...}` (braces balanced; unclosed: to the end), or, for
    `\\boxed 5$`, the text up to the next `$`."""
    after = text.split("boxed")[-1]
    if not after.startswith("{"):
        return after.split("$")[0].strip()
    depth, content = 1, []
    for char in after[1:]:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            break
        content.append(char)
    return "".join(content)


def delete_extra_zero(number: str) -> str:
    """A number as the evaluator writes it: its float value without trailing zeros (`7.50` ->
    `7.5`, `12.0` -> `12`, `1/2` -> `0.5`); text that is no number stays as it is."""
    value = _float_value(number)
    if value is None:
        return number
    written = str(value).rstrip("0")
    return str(int(written.rstrip("."))) if written.endswith(".") else str(float(written))


def _float_value(number: str) -> float | None:
    """`float`, or for `a/b` the quotient (the evaluator `eval`s it; this reads only numbers)."""
    try:
        return float(number)
    except ValueError:
        pass
    numerator, _, denominator = number.partition("/")
    try:
        return float(numerator) / float(denominator)
    except (ValueError, ZeroDivisionError):
        return None


# ---------------------------------------------------------------- MATH answers as the evaluator cleans them

def strip_math(text: str) -> str:
    """The evaluator's `_strip_string` (from the MATH benchmark's own checker): drop line breaks,
    `\\!`, `\\left`/`\\right`, degrees, dollars, a trailing `\\text{ unit}`, percent signs and
    spaces; `dfrac`/`tfrac` -> `frac`; `.5` -> `0.5`; `k = 3` -> `3`; `\\sqrt3` -> `\\sqrt{3}`;
    `\\frac12` -> `\\frac{1}{2}`; `3/4` -> `\\frac{3}{4}`."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").strip("$").replace("\\$", "")
    text = text.split("\\text{ ")[0].replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text.startswith("."):
        text = "0" + text
    sides = text.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        text = sides[1]
    text = _braced_sqrt(text).replace(" ", "")
    return _slash_fraction(_braced_fractions(text))


def _braced_sqrt(text: str) -> str:
    pieces = text.split("\\sqrt")
    return pieces[0] + "".join("\\sqrt" + (p if not p or p.startswith("{") else "{" + p[0] + "}" + p[1:])
                               for p in pieces[1:])


def _braced_fractions(text: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{72}` -> `\\frac{1}{72}`; left as it is when a
    `\\frac` has fewer than two characters after it."""
    pieces = text.split("\\frac")
    rebuilt = [pieces[0]]
    for piece in pieces[1:]:
        if piece.startswith("{") or not piece:
            rebuilt.append("\\frac" + piece)
        elif len(piece) < 2:
            return text
        elif piece[1] == "{":
            rebuilt.append("\\frac{" + piece[0] + "}" + piece[1:])
        else:
            rebuilt.append("\\frac{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "".join(rebuilt)


def _slash_fraction(text: str) -> str:
    numerator, slash, denominator = text.partition("/")
    if not slash or "/" in denominator:
        return text
    try:
        if text != f"{int(numerator)}/{int(denominator)}":
            return text
    except ValueError:
        return text
    return f"\\frac{{{int(numerator)}}}{{{int(denominator)}}}"


# ---------------------------------------------------------------- comparing

def paper_equal(answer: str | None, gold: str, task: Task, answer_type: str) -> bool:
    """Whether the evaluator counts `answer` (read by `paper_answer`) right against the
    project's canonical `gold` (see the module docstring)."""
    if answer is None:
        return False
    if ANSWER_RULES[task] == "first":
        return answer == PAPER_LABELS.get(gold, gold)
    if answer_type == "number":
        gold = delete_extra_zero(gold)
    elif answer_type == "math":
        gold = strip_math(gold)
    return _compare_with_groundtruth(answer, gold)


def _compare_with_groundtruth(answer: str, gold: str) -> bool:
    """`compare_answer_with_groundtruth` with a string gold: `\\text{` dropped, a gold `(a)`
    found anywhere in the answer, else case-insensitive equality."""
    answer, gold = (_without_text(s) for s in (answer, gold))
    if gold.lower() in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        return gold.lower() in answer.lower()
    return answer.lower() == gold.lower()


def _without_text(value: str) -> str:
    return value.replace("\\text{", "").rstrip("}") if "\\text{" in value else value
