"""Answer extraction and scoring for numeric answers.

"The answer is X" is preferred; otherwise the last number in the text. Numbers may carry commas,
currency, units and percent signs; 145 and 145.0 are the same answer.
"""

from __future__ import annotations

import re
from fractions import Fraction

NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?"
ANSWER_PHRASE = re.compile(rf"answer is:?\s*\(?({NUMBER})", re.IGNORECASE)
ANY_NUMBER = re.compile(NUMBER)


def extract_number(text: str) -> str | None:
    """The answer as a canonical number string, or None when the text holds no number."""
    match = ANSWER_PHRASE.search(text)
    raw = match.group(1) if match else _last(ANY_NUMBER.findall(text))
    return None if raw is None else canonical_number(raw)


def canonical_number(raw: str) -> str | None:
    cleaned = raw.replace(",", "").replace("$", "").rstrip(".")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def numbers_equal(predicted: str | None, gold: str) -> bool:
    if predicted is None:
        return False
    gold_canonical = canonical_number(gold)
    if gold_canonical is None:
        return False
    return abs(float(Fraction(predicted)) - float(Fraction(gold_canonical))) < 1e-6


def _last(items: list[str]) -> str | None:
    return items[-1] if items else None
