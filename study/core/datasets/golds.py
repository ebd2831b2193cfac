"""Reading gold answers of multiple-choice data sets as released files write them.

The paper's AQuA answer-only file writes its gold (`output`) as a bare letter in 4,924 of 6,940
rows; the others are `B.`, `(B)`, `Option B`, `: C`, `is D.`, the option's own text (`0.40%`),
a letter before its value (`B 5/12`), or a whole rationale ending `... Answer C`. Scoring a
prediction against such a string as it is counts correct rationales wrong, so every place that
reads a choice gold from a file (the data sets' alpaca files, the released import) reads it here.

A gold is read only when every reading agrees: the text's leading label, each concluding phrase
("Answer C", "C is correct", "Hence E.", a lone label at the end) and an option's whole text. A
text whose readings disagree (`E: ... Hence option A is the greatest`) or that gives none is
unreadable (None): the caller counts and reports it, and never scores against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from study.core.datasets.math_answers import extract_math
from study.core.datasets.problems import Choice

GoldReader = Callable[[str, tuple[Choice, ...]], str | None]

DEFAULT_LABELS = ("A", "B", "C", "D", "E")
# among the labels only "A" is also an English word: "A train leaves ..." is prose, not option A
ARTICLE_LABELS = frozenset({"A"})
KEYWORD = r"(?:the\s+)?(?:correct\s+)?(?:answer|ans|option|choice|is)"
CONCLUDING_WORDS = frozenset({"therefore", "hence", "thus", "so", "or", "is", "i.e", "i.e.", "ie", "imo", "answer",
                              "ans", "option", "choice"})
INLINE_CHOICES = re.compile(r"answer\s+choices\s*:", re.IGNORECASE)
INLINE_SHAPES = (re.compile(r"\(\s*([A-E])\s*\)"), re.compile(r"(?:^|,)\s*([A-E])\s*:\s"),
                 re.compile(r"(?:^|\n)\s*([A-E])\.\s"))


def read_choice_gold(raw: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """The gold label ("B") that a released gold text gives, or None when it cannot be read."""
    labels = tuple(choice.label.upper() for choice in choices) or DEFAULT_LABELS
    label = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    text = " ".join(str(raw).split())
    bare = re.fullmatch(rf"[\W_]*(?i:{KEYWORD}[\W_]*)*\(?\s*({label}|{label.lower()})\s*\)?[\W_]*", text)
    if bare:
        return bare.group(1).upper()
    readings = _leading_labels(text, label, choices) | _concluding_labels(text, label)
    readings |= _option_text_labels(text, choices)
    return readings.pop() if len(readings) == 1 else None


def _leading_labels(text: str, label: str, choices: tuple[Choice, ...]) -> set[str]:
    # "B 5/12", "E$72.60", "C. 7", "A The company's ...", "Option C a + b = 60 ..."; never "CIt may" or "A train"
    match = re.match(rf"[\W_]*(?i:({KEYWORD})[\W_]*)*['\"(]?({label})['\")]?(?=$|[^A-Za-z\s]|\s+[^a-z])", text)
    if match is None:
        spaced = re.match(rf"[\W_]*(?i:({KEYWORD})[\W_]*)*({label})\s+[a-z]", text)
        if spaced is None or (spaced.group(2) in ARTICLE_LABELS and spaced.group(1) is None):
            return set()
        match = spaced
    # the value after the label is a reading too: "B 0.40%" where 0.40% is option D's text disagrees
    found, written = match.group(2), _option_text_labels(text[match.end():], choices)
    return {found} if not written or found in written else {found} | written


def _concluding_labels(text: str, label: str) -> set[str]:
    patterns = (
        # "Answer C", "the answer is C", "ANSWER:B", "Answer - A", "Ans A", "OA is C", "answer choice A"
        rf"(?i:\b(?:answer|ans|OA)\b)(?:\s|(?i:is|=|:|-|should be|would be|must be|will be|option|choice))*"
        rf"['\"(]?({label})(?![\w'])",
        # "C is correct", "so B is the ans", "D is answer", "E it is"
        rf"(?<![\w'])({label})\s+(?i:is\s+(?:the\s+)?(?:correct|right|answer|ans)\b|it\s+is\b)",
        # "Hence option A is the greatest", "choice A."
        rf"(?i:\b(?:hence|therefore|thus|so)\b)[\s,]*(?i:option|choice)\s*['\"(]?({label})\b",
        rf"(?i:\bchoice)\s+({label})[\s.!]*$",
    )
    found = {m.group(1) for pattern in patterns for m in re.finditer(pattern, text)}
    trailing = _trailing_label(text, label)
    return found | ({trailing} if trailing else set())


def _trailing_label(text: str, label: str) -> str | None:
    # a lone label at the very end: "8C3 = 56. D", "= 116 A", "therefore E."; not "... of Store B."
    match = re.search(rf"(?<![A-Za-z])({label})[\s.!'\")]*$", text)
    if match is None:
        return None
    before = text[:match.start()].rstrip()
    if not before or not before[-1].isalpha() or before.split()[-1].lower().rstrip(",") in CONCLUDING_WORDS:
        return match.group(1)
    return None


def _option_text_labels(text: str, choices: tuple[Choice, ...]) -> set[str]:
    """The label of the option whose whole text the gold is ("0.40%", "none of the above")."""
    wanted = _normalized_option(text)
    return {choice.label.upper() for choice in choices if wanted and _normalized_option(choice.text) == wanted}


def _normalized_option(text: str) -> str:
    return "".join(text.lower().split()).strip(".;:,'\"()")  # "30cm" is the option "30 cm"


def inline_choices(question: str) -> tuple[Choice, ...]:
    """The options written inside a question's text, as the paper's files give them:
    `Answer Choices: (A) 3 (B) 2.5 ...` (AQuA), `Answer choices: A: race track, B: ...` (CSQA and
    OBQA training files) or `Answer Choices:\nA. bank\nB. library` (CSQA test); () when none."""
    found = list(INLINE_CHOICES.finditer(question))
    if not found:
        return ()
    tail = question[found[-1].end():]
    # the shape that reads the most options in order A, B, C, ...: a stray "(D)" inside an
    # option's text is not a shape of its own
    return max((_options_in_order(shape.split(tail)) for shape in INLINE_SHAPES), key=len)


def _options_in_order(parts: list[str]) -> tuple[Choice, ...]:
    choices = [Choice(label, text.strip().rstrip(",").strip()) for label, text in zip(parts[1::2], parts[2::2])]
    expected = [chr(ord("A") + index) for index in range(len(choices))]
    return tuple(choices) if [c.label for c in choices] == expected else ()


def read_math_gold(text: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """A MATH gold as a file writes it: the last `\\boxed{}` of a solution, else the bare answer
    (the paper's `output` column: `52`, `5n+10`); None when empty."""
    if "\\boxed" in text:
        return extract_math(text)
    return text.strip() or None


def unreadable_golds_line(path: Path | str, unreadable: int, rows: int, examples: list[str]) -> str:
    """The counted warning for golds that cannot be read, with a few of them as they are written."""
    shown = ", ".join(repr(e if len(e) <= 40 else f"{e[:37]}...") for e in examples[:3])
    return (f"warning: {path}: {unreadable} of {rows} gold answers cannot be read (e.g. {shown}); "
            f"those rows are left out")
