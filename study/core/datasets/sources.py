"""Reading source files into `Problem`s: the file formats, and the parsing helpers data sets share.

A source file is a JSON list, JSON lines (whatever its extension), or a folder of one-object JSON
files (MATH's layout). Each data set's own record parser lives in its module (`svamp.py`, ...);
the shapes several data sets share live here: the question / choices / answerKey shape of
CommonsenseQA and OpenBookQA, and alpaca lists ({instruction, output} or {instruction, label}),
which work for any data set's files (their golds read by `golds.py`).

A bad row raises `DataError` naming the file and the row index.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from study.core.datasets.answers import canonical_number
from study.core.datasets.golds import GoldReader, inline_choices, read_choice_gold, unreadable_golds_line
from study.core.datasets.problems import Choice, Problem

log = logging.getLogger(__name__)

Record = dict[str, Any]
RecordParser = Callable[[Record, str], Problem]


class DataError(ValueError):
    """A data file or row that cannot be used; the message names the file (and row)."""


def normalize_text(text: str) -> str:
    """Whitespace-collapsed, lower-cased: how questions are matched across files."""
    return " ".join(text.split()).lower()


def read_records(path: Path) -> list[Record]:
    """Every record of a source file: a JSON list, JSON lines (whatever the extension: AQuA's
    `.json` files are JSON lines), or a folder of one-object JSON files (MATH's layout)."""
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise DataError(f"{path}: folder holds no .json files")
        return [_read_object(file) for file in files]
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON: {error}") from None
    else:
        records = list(_json_lines(path, text))
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {index}: expected a JSON object, got {type(record).__name__}")
    return records


def require_json_list(path: Path, what: str) -> None:
    """Alpaca files are JSON lists; a lone object is not read as a one-row file."""
    if not _read_text(path).lstrip().startswith("["):
        raise DataError(f"{path}: {what} is a JSON list of rows ([{{...}}, ...]), not a single object or JSON lines")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text: {error}") from None


def _read_object(path: Path) -> Record:
    try:
        record = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected one JSON object, got {type(record).__name__}")
    return {**record, "_file": path.stem}


def _json_lines(path: Path, text: str) -> Iterator[Any]:
    for index, line in enumerate(line for line in text.splitlines() if line.strip()):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: row {index}: not valid JSON: {error}") from None


def parse_records(path: Path, records: list[Record], parser: RecordParser) -> list[Problem]:
    """Apply a record parser to every row; a bad row names the file, the row and what is wrong."""
    problems = []
    for index, record in enumerate(records):
        try:
            problems.append(parser(record, f"{path.stem}-{index}"))
        except KeyError as error:
            raise DataError(f"{path}: row {index}: missing field {error}; has {sorted(record)}") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{path}: row {index}: {error}") from None
    return problems


def number_field(raw: Any, field: str) -> str:
    """A record's numeric field as a canonical number string."""
    canonical = canonical_number(str(raw))
    if canonical is None:
        raise ValueError(f"field '{field}' is not a number: {raw!r}")
    return canonical


def choice_label(raw: Any, choices: list[Choice], field: str) -> str:
    """A record's gold label, upper-case, read like every choice gold (`golds.read_choice_gold`:
    `b`, `(B)`, `Option B`) and checked against its choices."""
    label = read_choice_gold(str(raw), tuple(choices))
    if label is None:
        raise ValueError(f"field '{field}' is {raw!r}, not one of the choices {[c.label for c in choices]}")
    return label


def parse_qa_choices(record: Record, fallback_uid: str) -> Problem:
    """CommonsenseQA and OpenBookQA share one shape: question.stem, question.choices, answerKey;
    OBQA's `fact1` is its human rationale."""
    question = record["question"]
    choices = [Choice(str(c["label"]).strip().upper(), str(c["text"]).strip()) for c in question["choices"]]
    fact = record.get("fact1")
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=str(question["stem"]).strip(),
        answer=choice_label(record["answerKey"], choices, "answerKey"),
        choices=tuple(choices),
        human_rationale=f"{str(fact).strip().rstrip('.')}." if fact else None,
    )


def hub_choices(row: Record) -> list[Record]:
    """The hub's column-wise `choices` ({label: [...], text: [...]}) as the source's list of
    {label, text} (the hub copies of CommonsenseQA and OpenBookQA)."""
    return [{"label": label, "text": text} for label, text in zip(row["choices"]["label"], row["choices"]["text"])]


def is_alpaca(record: Record) -> bool:
    return "instruction" in record and ("output" in record or "label" in record)


def alpaca_problems(path: Path, records: list[Record], read_gold: GoldReader) -> list[Problem]:
    """Alpaca rows: the question is `instruction` (+ `input`); gold is `label`, else `output`,
    read with the data set's gold reader (options written in the question map an option's text
    to its label). A row whose gold cannot be read is left out and counted in one warning line:
    never scored against a gold it does not have."""
    problems, unreadable = [], []
    for index, record in enumerate(records):
        if "instruction" not in record or ("label" not in record and "output" not in record):
            raise DataError(f"{path}: row {index}: missing field 'instruction' and 'output' or 'label'; "
                            f"has {sorted(record)}")
        question = " ".join(p for p in (str(record["instruction"]).strip(), str(record.get("input", "")).strip()) if p)
        raw = record["label"] if record.get("label") is not None else record.get("output")
        answer = read_gold(str(raw if raw is not None else ""), inline_choices(question))
        if answer is None:
            unreadable.append(str(raw))
            continue
        problems.append(Problem(uid=str(record.get("id", f"{path.stem}-{index}")), question=question, answer=answer))
    if unreadable:
        log.warning(unreadable_golds_line(path, len(unreadable), len(records), unreadable))
    return problems
