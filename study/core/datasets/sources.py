"""Reading source files into `Problem`s: the file formats, and the parsing helpers data sets share.

A source file is a JSON list, JSON lines (whatever its extension), or a folder of one-object JSON
files (MATH's layout). Each data set's own record parser lives in its module (`svamp.py`, ...);
the shapes several data sets share live here: the question / choices / answerKey shape of
CommonsenseQA and OpenBookQA, and alpaca lists ({instruction, output} or {instruction, label}),
which work for any data set's files (their golds read by `golds.py`).

A file is named by its location: a local path or a URI (s3://, gs://, file://), read through
`study.core.storage`. A bad row raises `DataError` naming the file and the row index; a location
that cannot be reached (no such bucket, a scheme no filesystem handles, a network error) is a
`DataError` naming it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import study.core.storage as storage  # the module path, so the layer check sees storage, not all of study.core
from study.core.datasets.answers import canonical_number
from study.core.storage.files import InputError, decode_text
from study.core.datasets.golds import GoldReader, inline_choices, read_choice_gold, unreadable_golds_line
from study.core.datasets.problems import Choice, Problem

log = logging.getLogger(__name__)

Record = dict[str, Any]
RecordParser = Callable[[Record, str], Problem]


class DataError(InputError):
    """A data file or row that cannot be used; the message names the file (and row)."""


def normalize_text(text: str) -> str:
    """Whitespace-collapsed, lower-cased: how questions are matched across files."""
    return " ".join(text.split()).lower()


Location = str | Path  # a local path or a URI
Reached = TypeVar("Reached")


def read_records(path: Location) -> list[Record]:
    """Every record of a source file: a JSON list, JSON lines (whatever the extension: AQuA's
    `.json` files are JSON lines), or a folder of one-object JSON files (MATH's layout)."""
    path = str(path)
    if _reach(path, storage.is_dir):
        files = _reach(path, lambda folder: storage.files_under(folder, ".json"))
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
        records = _json_lines_or_refusal(path, text)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {index}: expected a JSON object, got {type(record).__name__}")
    return records


def _reach(location: str, look: Callable[[str], Reached]) -> Reached:
    """`look(location)`, with a location that cannot be reached (OSError: no such bucket, no
    network, a scheme pyarrow cannot open) as one `DataError` naming it."""
    try:
        return look(location)
    except OSError as error:
        raise DataError(f"{location}: cannot be reached: {error}") from None


def location_exists(location: Location) -> bool:
    """Whether a data file or folder exists (`DataError` when its location cannot be reached)."""
    return _reach(str(location), storage.exists)


def location_is_dir(location: Location) -> bool:
    return _reach(str(location), storage.is_dir)


def require_json_list(path: Location, what: str) -> None:
    """Alpaca files are JSON lists; a lone object is not read as a one-row file."""
    if not _read_text(str(path)).lstrip().startswith("["):
        raise DataError(f"{path}: {what} is a JSON list of rows ([{{...}}, ...]), not a single object or JSON lines")


def read_text(location: Location) -> str:
    """A data file's UTF-8 text (`DataError` naming it when it is absent, unreachable or not UTF-8)."""
    return _read_text(str(location))


def _read_text(path: str) -> str:
    if not _reach(path, storage.exists):
        raise DataError(f"{path}: no such file")
    if _reach(path, storage.is_dir):
        raise DataError(f"{path}: is a folder, not a file")
    return decode_text(_reach(path, storage.read_bytes), path, DataError)


def _read_object(path: str) -> Record:
    try:
        record = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected one JSON object, got {type(record).__name__}")
    return {**record, "_file": storage.stem(path)}


def _json_lines_or_refusal(path: str, text: str) -> list[Any]:
    """JSON lines; a file that is one JSON object over several lines is named as such (not "not
    valid JSON" on its first line)."""
    try:
        return list(_json_lines(path, text))
    except DataError as lines_error:
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            raise lines_error from None  # a broken line: the JSON-lines error names its row
        shape = "object" if isinstance(whole, dict) else type(whole).__name__
        raise DataError(f"{path}: holds one JSON {shape}, not rows: expected a JSON list of rows "
                        "([{...}, ...]) or JSON lines (one object per line)") from None


def _json_lines(path: str, text: str) -> Iterator[Any]:
    for index, line in enumerate(line for line in text.splitlines() if line.strip()):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: row {index}: not valid JSON: {error}") from None


def parse_records(path: Location, records: list[Record], parser: RecordParser) -> list[Problem]:
    """Apply a record parser to every row; a bad row names the file, the row and what is wrong."""
    problems = []
    for index, record in enumerate(records):
        try:
            problems.append(parser(record, f"{storage.stem(str(path))}-{index}"))
        except KeyError as error:
            raise DataError(f"{path}: row {index}: missing field {error}; has {sorted(record)}") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{path}: row {index}: {error}") from None
    return problems


def text_field(record: Record, field: str) -> str:
    """A record's text field, stripped: a null, a non-text value or blank text is an error, never
    read as the text "None"."""
    raw = record[field]
    if not isinstance(raw, str):
        raise ValueError(f"field '{field}' is {'null' if raw is None else type(raw).__name__}, not text")
    if not raw.strip():
        raise ValueError(f"field '{field}' is empty")
    return raw.strip()


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
        question=text_field(question, "stem"),
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


def alpaca_problems(path: Location, records: list[Record], read_gold: GoldReader) -> list[Problem]:
    """Alpaca rows: the question is `instruction` (+ `input`); gold is `label`, else `output`,
    read with the data set's gold reader (options written in the question map an option's text
    to its label). A row whose gold cannot be read is left out and counted in one warning line:
    never scored against a gold it does not have."""
    problems, unreadable = [], []
    for index, record in enumerate(records):
        if "instruction" not in record or ("label" not in record and "output" not in record):
            raise DataError(f"{path}: row {index}: missing field 'instruction' and 'output' or 'label'; "
                            f"has {sorted(record)}")
        try:
            instruction = text_field(record, "instruction")
        except ValueError as error:
            raise DataError(f"{path}: row {index}: {error}") from None
        question = " ".join(p for p in (instruction, str(record.get("input") or "").strip()) if p)
        raw = record["label"] if record.get("label") is not None else record.get("output")
        answer = read_gold(str(raw if raw is not None else ""), inline_choices(question))
        if answer is None:
            unreadable.append(str(raw))
            continue
        problems.append(Problem(uid=str(record.get("id", f"{storage.stem(str(path))}-{index}")), question=question,
                                answer=answer))
    if unreadable:
        log.warning(unreadable_golds_line(path, len(unreadable), len(records), unreadable))
    return problems
