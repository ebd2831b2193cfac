"""Answer extraction and scoring for numbers, multiple-choice letters and yes/no answers.

Every extractor has the signature `extract_X(text, choices=()) -> str | None` and returns the
canonical answer (None when the text gives none); every scorer is `X_equal(predicted, gold) -> bool`
and canonicalises the gold answer the same way. Both shapes are fixed so that an answer kind
(`descriptor.AnswerKind`, which a data set picks) can hold any pair. An answer phrase ("The answer is X", "Answer: X") beats every other
mention, the last phrase winning; without one the last mention in the text counts, where a mention
is only what stands as an answer: a yes/no word before a stop or comma ("false rumors" is none), a
label outside a line listing the options, or after "is"/"choose" at a conclusion's end. A phrase that
names no option ("none of the above") leaves every earlier label unchosen.
MATH expressions are handled in `study.core.datasets.math_answers` and re-exported here.
"""

from __future__ import annotations

import bisect
import re
from decimal import Decimal, localcontext
from fractions import Fraction

# MATH answers live in their own module, which also holds the answer phrase (no import cycle);
# re-exported so that one module holds every extractor
from study.core.datasets.math_answers import ANSWER_PHRASE, answer_claims, extract_math, math_equal, normalize_math
from study.core.datasets.problems import Choice

__all__ = ["ANSWER_PHRASE", "answer_claims", "extract_number", "canonical_number", "numbers_equal",
           "extract_choice", "choices_equal", "extract_yes_no", "yes_no_equal", "extract_math", "math_equal",
           "normalize_math"]

# a claim ends at a line break or at a sentence's full stop; a decimal point ("145.0") is no full stop
CLAIM_END = re.compile(r"\n|[.!?](?!\d)")

# not glued to a word or a decimal point ("level3", "x2"); a minus sign only glued to its digits,
# so "8 - 3" is 8 and 3
NUMBER = re.compile(
    r"(?<![\w.])(?:[-−](?=[$\d.]))?(?:\$\s?)?[-−]?"
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)"
)
# the difference below which two numbers are one answer; it absorbs rounded repeating decimals
NUMBER_TOLERANCE = Fraction(1, 10**6)

YES_NO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
# without an answer phrase a word counts only where it stands as an answer: before a stop or a
# comma ("No, ...", "... so yes."), or "true"/"false" said of something ("the claim is true because");
# "false rumors" or "no evidence" is no answer
YES_NO_STANDING = re.compile(r"\b(yes|no|true|false)\b(?=\s*(?:[.!,;:)\]*\"']|$))"
                             r"|\b(?:is|are|was|were)\s+(true|false)\b", re.IGNORECASE | re.MULTILINE)
YES_NO_CANONICAL = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}

DEFAULT_LABELS = ("A", "B", "C", "D", "E")
# a line naming this many labels lists the options
LIST_LABELS = 3
# an answer phrase saying no option is right
NO_CHOICE = re.compile(r"^\W*(?:none of (?:the|these|them)\b|no (?:correct|right|valid) (?:option|answer|choice)"
                       r"|not (?:among|listed|given)|cannot be determined)", re.IGNORECASE)


# ---------------------------------------------------------------- numbers

def extract_number(text: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """The answer as a canonical number string ("145", "0.75"), or None when the text holds no number."""
    for claim in answer_claims(text, CLAIM_END):
        number = _claim_number(claim)
        if number is not None:
            return number
    numbers = NUMBER.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def _claim_number(claim: str) -> str | None:
    # "The answer is 12 + 13 = 25": the claim's value is what its last "=" gives
    for part in (claim.rsplit("=", 1)[-1], claim):
        found = NUMBER.search(part)
        if found:
            return canonical_number(found.group(0))
    return None


def canonical_number(raw: str) -> str | None:
    """'$1,000' -> '1000', '145.0' -> '145', '3/4' -> '0.75', '25%' -> '25'; None when not a number."""
    cleaned = re.sub(r"[\s$,%]", "", raw).replace("−", "-").rstrip(".")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    return _plain(value)


def _plain(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # a terminating decimal is written exactly, a repeating one to 12 significant digits
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    with localcontext() as context:
        context.prec = 28 if denominator == 1 else 12
        decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return format(decimal.normalize(), "f")


def numbers_equal(predicted: str | None, gold: str) -> bool:
    """Whether two answers are the same number; either may be messy ("$1,000", "51.0", "12 apples")."""
    if predicted is None:
        return False
    left, right = _number_value(predicted), _number_value(gold)
    if left is None or right is None:
        return False
    return abs(left - right) <= NUMBER_TOLERANCE


def _number_value(text: str) -> Fraction | None:
    canonical = canonical_number(text) or extract_number(text)
    return None if canonical is None else Fraction(canonical)


# ---------------------------------------------------------------- multiple choice

def extract_choice(text: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """The chosen label, upper-case ("B"), from "(B)", "B:", "B)", "Answer: B" or an option's text.

    A lone capital letter in prose ("A man walks") is no choice: it counts only right after an
    answer phrase or on a line of its own.
    """
    labels = tuple(choice.label.upper() for choice in choices) or DEFAULT_LABELS
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    for claim in answer_claims(text, CLAIM_END):
        mentions = _formatted_mentions(claim, alternatives) + _option_mentions(claim, choices)
        mentions += _claim_start_mentions(claim, alternatives)
        if mentions:
            return min(_outermost(mentions), key=lambda mention: mention[0])[2]
        if NO_CHOICE.search(claim):  # "The answer is none of the above": no label said earlier counts
            return None
    mentions = _unlisted(_formatted_mentions(text, alternatives), text) + _option_mentions(text, choices)
    mentions += _own_line_mentions(text, alternatives) + _conclusion_mentions(text, alternatives)
    return max(_outermost(mentions), key=lambda mention: mention[0])[2] if mentions else None


Mention = tuple[int, int, str]  # start, end, label


def _label_mentions(pattern: str, text: str, flags: int = 0) -> list[Mention]:
    return [(m.start(), m.end(), m.group("label").upper()) for m in re.finditer(pattern, text, flags)]


def _formatted_mentions(text: str, alternatives: str) -> list[Mention]:
    # "(b)" is unambiguous in either case; "B)" and "B:" only as capitals, "a)" is too common in prose
    return (_label_mentions(rf"\(\s*(?P<label>{alternatives})\s*\)", text, re.IGNORECASE)
            + _label_mentions(rf"(?<![\w(])(?P<label>{alternatives})[):](?!\w)", text)
            + _label_mentions(rf"\b(?:option|choice)\s+(?P<label>{alternatives})\b", text, re.IGNORECASE))


def _unlisted(mentions: list[Mention], text: str) -> list[Mention]:
    """The mentions outside a list of options: a line naming three or more labels ("A: 3, B: 5, D: 7")
    lists them, it chooses none."""
    breaks = [i for i, char in enumerate(text) if char == "\n"]
    lines = [bisect.bisect(breaks, start) for start, _, _ in mentions]
    line_labels: dict[int, set[str]] = {}
    for line, (_, _, label) in zip(lines, mentions):
        line_labels.setdefault(line, set()).add(label)
    return [m for m, line in zip(mentions, lines) if len(line_labels[line]) < LIST_LABELS]


def _conclusion_mentions(text: str, alternatives: str) -> list[Mention]:
    # "so the correct option is C." / "I would choose (B)": a capital label that ends a conclusion
    pattern = rf"\b(?:is|be|choose|select|pick)\s*:?\s*\(?(?P<label>{alternatives})\)?(?=\s*(?:[.!,;]|$))"
    return _label_mentions(pattern, text, re.MULTILINE)


def _claim_start_mentions(claim: str, alternatives: str) -> list[Mention]:
    # right after "The answer is": a capital label, or a small one only when nothing follows it,
    # so that "The answer is a river bank" is not choice A
    capital = rf"^[\s*\"']*(?P<label>{alternatives})(?!\w)"
    small = rf"^[\s*\"']*(?P<label>{alternatives.lower()})\s*(?=$|[.,;:!?*\"'])"
    return _label_mentions(capital, claim) + _label_mentions(small, claim)


def _own_line_mentions(text: str, alternatives: str) -> list[Mention]:
    # a label on a line of its own, or a capital one as the last sentence of a line ("... ELIMINATE E. B")
    pattern = rf"^[ \t*\"']*\(?(?P<label>{alternatives})\)?[.:]?[ \t*\"']*$"
    last_sentence = rf"(?<=[.!?] )[ \t*\"']*\(?(?P<label>{alternatives})\)?\.?[ \t*\"']*$"
    return (_label_mentions(pattern, text, re.IGNORECASE | re.MULTILINE)
            + _label_mentions(last_sentence, text, re.MULTILINE))


def _option_mentions(text: str, choices: tuple[Choice, ...]) -> list[Mention]:
    mentions = []
    for choice in choices:
        words = choice.text.split()
        if words:
            pattern = r"(?<!\w)" + r"\s+".join(re.escape(word) for word in words) + r"(?!\w)"
            mentions += [(m.start(), m.end(), choice.label.upper())
                         for m in re.finditer(pattern, text, re.IGNORECASE)]
    return mentions


def _outermost(mentions: list[Mention]) -> list[Mention]:
    """The mentions inside no longer one: "bank" inside "a river bank", or "B" inside option text, is
    part of the longer mention. One sweep in order of start (longest first), not a pairwise test."""
    inner: set[int] = set()
    reach, reach_span = -1, (-1, -1)  # the furthest end so far, and the span that reaches it
    for index in sorted(range(len(mentions)), key=lambda i: (mentions[i][0], -mentions[i][1])):
        start, end, _ = mentions[index]
        if end <= reach and reach_span != (start, end):
            inner.add(index)
        elif end > reach:
            reach, reach_span = end, (start, end)
    return [m for i, m in enumerate(mentions) if i not in inner]


def choices_equal(predicted: str | None, gold: str) -> bool:
    """Whether two labels are the same choice; the gold one may be "(b)" or "B."."""
    if predicted is None:
        return False
    gold_label = _bare_label(gold)
    return gold_label != "" and _bare_label(predicted) == gold_label


def _bare_label(label: str) -> str:
    return label.strip().rstrip(".:").strip("()").strip().upper()


# ---------------------------------------------------------------- yes / no

def extract_yes_no(text: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """"yes" or "no" ("true"/"false" count as such), or None when the text says neither."""
    for claim in answer_claims(text, CLAIM_END):
        found = YES_NO.search(claim)
        if found:
            return YES_NO_CANONICAL[found.group(1).lower()]
    words = [next(word for word in found if word) for found in YES_NO_STANDING.findall(text)]
    return YES_NO_CANONICAL[words[-1].lower()] if words else None


def yes_no_equal(predicted: str | None, gold: str) -> bool:
    """Whether two answers agree; either may be "yes"/"no"/"true"/"false" in any case."""
    if predicted is None:
        return False
    gold_answer = _canonical_yes_no(gold)
    return gold_answer is not None and _canonical_yes_no(predicted) == gold_answer


def _canonical_yes_no(answer: str) -> str | None:
    return YES_NO_CANONICAL.get(answer.strip().strip(".!\"'").lower())
