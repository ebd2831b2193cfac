"""Reading each data set's own file formats into `Problem`s.

One record parser per source format, each taking a record exactly as the source ships it:
SVAMP `SVAMP.json` (Body, Question, Equation, Answer), GSM8K jsonl (question, answer ending
`#### N`), AQuA-RAT jsonl (question, options ["A)..."], rationale, correct), MATH (problem, level,
type, solution with `\\boxed{}`; one json per problem in folders, or a jsonl / json list),
CommonsenseQA and OpenBookQA jsonl (question.stem, question.choices, answerKey; OBQA adds fact1),
StrategyQA json list (qid, question, answer true/false, facts). Alpaca lists ({instruction,
output} or {instruction, label}) work for any data set's files.

A bad row raises `DataError` naming the file and the row index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from study.core.datasets.answers import canonical_number
from study.core.datasets.math_answers import extract_math
from study.core.datasets.problems import Choice, Problem

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


def _number(raw: Any, field: str) -> str:
    canonical = canonical_number(str(raw))
    if canonical is None:
        raise ValueError(f"field '{field}' is not a number: {raw!r}")
    return canonical


def _strip_outer_parens(expression: str) -> str:
    expression = expression.strip()
    if expression.startswith("(") and expression.endswith(")") and _balanced(expression[1:-1]):
        return expression[1:-1].strip()
    return expression


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def parse_svamp(record: Record, fallback_uid: str) -> Problem:
    answer = _number(record["Answer"], "Answer")
    return Problem(
        uid=str(record.get("ID", fallback_uid)),
        question=" ".join(f"{record['Body']} {record['Question']}".split()),
        answer=answer,
        human_rationale=f"{_strip_outer_parens(record['Equation'])} = {record['Answer']}",
    )


GSM8K_CALCULATOR = re.compile(r"<<[^>]*>>")


def parse_gsm8k(record: Record, fallback_uid: str) -> Problem:
    solution, separator, final = str(record["answer"]).rpartition("####")
    if not separator:
        raise ValueError("field 'answer' does not end with '#### N'")
    steps = [line.strip() for line in GSM8K_CALCULATOR.sub("", solution).splitlines() if line.strip()]
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=str(record["question"]).strip(),
        answer=_number(final.strip(), "answer"),
        human_rationale=" ".join(steps),
    )


AQUA_OPTION = re.compile(r"^\s*\(?([A-Ea-e])\s*[):]\s*(.*)$", re.DOTALL)


def parse_aqua(record: Record, fallback_uid: str) -> Problem:
    choices = []
    for option in record["options"]:
        match = AQUA_OPTION.match(str(option))
        if match is None:
            raise ValueError(f"option {option!r} is not like 'A)text'")
        choices.append(Choice(match.group(1).upper(), match.group(2).strip()))
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=str(record["question"]).strip(),
        answer=_choice_label(record["correct"], choices, "correct"),
        choices=tuple(choices),
        human_rationale=str(record.get("rationale", "")).strip() or None,
    )


def _choice_label(raw: Any, choices: list[Choice], field: str) -> str:
    label = str(raw).strip().upper()
    if label not in {choice.label for choice in choices}:
        raise ValueError(f"field '{field}' is {raw!r}, not one of the choices {[c.label for c in choices]}")
    return label


def parse_math(record: Record, fallback_uid: str) -> Problem:
    answer = extract_math(str(record["solution"]))  # the MATH convention: the last \boxed{}
    if answer is None:
        raise ValueError("field 'solution' has no \\boxed{} answer")
    uid = f"{record.get('type', 'math')}/{record['_file']}" if "_file" in record else fallback_uid
    return Problem(uid=str(record.get("unique_id", uid)), question=str(record["problem"]).strip(), answer=answer,
                   human_rationale=str(record["solution"]).strip())


def parse_qa_choices(record: Record, fallback_uid: str) -> Problem:
    """CommonsenseQA and OpenBookQA share one shape; OBQA's `fact1` is its human rationale."""
    question = record["question"]
    choices = [Choice(str(c["label"]).strip().upper(), str(c["text"]).strip()) for c in question["choices"]]
    fact = record.get("fact1")
    return Problem(
        uid=str(record.get("id", fallback_uid)),
        question=str(question["stem"]).strip(),
        answer=_choice_label(record["answerKey"], choices, "answerKey"),
        choices=tuple(choices),
        human_rationale=f"{str(fact).strip().rstrip('.')}." if fact else None,
    )


def parse_strategyqa(record: Record, fallback_uid: str) -> Problem:
    answer = record["answer"]
    if not isinstance(answer, bool):
        raise ValueError(f"field 'answer' must be true or false, got {answer!r}")
    facts = [str(fact).strip() for fact in record.get("facts", [])]
    return Problem(
        uid=str(record.get("qid", fallback_uid)),
        question=str(record["question"]).strip(),
        answer="yes" if answer else "no",
        human_rationale=" ".join(facts) or None,
    )


def is_alpaca(record: Record) -> bool:
    return "instruction" in record and ("output" in record or "label" in record)


def alpaca_parser(extract: Callable[[str], str | None]) -> RecordParser:
    """Alpaca rows: the question is `instruction` (+ `input`); gold is `label`, else the answer
    that `output` gives (extracted with the data set's own extractor)."""

    def parse(record: Record, fallback_uid: str) -> Problem:
        question = " ".join(p for p in (str(record["instruction"]).strip(), str(record.get("input", "")).strip()) if p)
        gold = record.get("label")
        answer = str(gold).strip() if gold is not None else extract(str(record["output"]))
        if not answer:
            raise ValueError("no gold answer: 'label' is empty and 'output' has no extractable answer")
        return Problem(uid=str(record.get("id", fallback_uid)), question=question, answer=answer)

    return parse


# Hugging Face hub copies whose columns differ from the source files: mapped back to the source
# shape so one record parser serves both.
def hub_commonsense_qa(row: Record) -> Record:
    choices = [{"label": label, "text": text} for label, text in zip(row["choices"]["label"], row["choices"]["text"])]
    return {"id": row["id"], "question": {"stem": row["question"], "choices": choices}, "answerKey": row["answerKey"]}


def hub_openbookqa(row: Record) -> Record:
    choices = [{"label": label, "text": text} for label, text in zip(row["choices"]["label"], row["choices"]["text"])]
    return {"id": row["id"], "question": {"stem": row["question_stem"], "choices": choices},
            "answerKey": row["answerKey"], "fact1": row.get("fact1")}
