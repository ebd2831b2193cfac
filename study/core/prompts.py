"""Teacher prompts, kept as data (prompts.yaml beside this module, or a study's own file of the same shape).

A study's own file may be on any storage (study.core.storage): `run` freezes it into the study
folder, where `status` and `resume` read it.

A prompt is the system message `<granularity> <format> <answer convention>` and the question as
the user message. `prompt_hash` fingerprints the composed system message; it is part of every
generated corpus's id.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from typing import get_args


from study.core import storage
from study.core.datasets import AnswerType, DataError
from study.core.storage.files import decode_text, load_yaml
from study.core.spec import Format

ANSWER_CONVENTION = "The answer is"
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)  # the answer kinds data sets declare
REASONING_FORMATS = ("cot", "answer_first", "bsm", "rar", "symbolic")


class PromptError(DataError):
    """A prompt library that cannot be used; names the file and the entry."""


@lru_cache(maxsize=8)
def load_library(path: str | None = None) -> dict:
    """The prompt library: the package's, or the file at `path` (a local path or a URI); checked
    whole on load."""
    source = path or "study/core/prompts.yaml"
    try:
        data = storage.read_bytes(path) if path else resources.files("study.core").joinpath("prompts.yaml").read_bytes()
    except OSError as error:
        raise PromptError(f"{source}: cannot read the prompt library: {error}") from None
    library = load_yaml(decode_text(data, source, PromptError), source, PromptError)
    _check(library, source)
    return {**library, "granularity": {int(level): text for level, text in library["granularity"].items()}}


def _check(library: object, source: str) -> None:
    if not isinstance(library, dict):
        raise PromptError(f"{source}: a prompt library is a mapping with granularity, format and answer")
    wanted = {"granularity": range(1, 7), "format": REASONING_FORMATS, "answer": ANSWER_TYPES}
    for section, keys in wanted.items():
        table = library.get(section)
        if section == "granularity" and isinstance(table, dict):
            table = {str(level): text for level, text in table.items()}  # YAML ints and JSON strings alike
            keys = [str(level) for level in keys]
        missing = [k for k in keys if not isinstance(table, dict) or not str(table.get(k, "")).strip()]
        if missing:
            raise PromptError(f"{source}: {section}: no prompt for {missing}")
    for answer_type in ANSWER_TYPES:
        if ANSWER_CONVENTION.lower() not in library["answer"][answer_type].lower():
            raise PromptError(f"{source}: answer.{answer_type}: the prompt must ask for the answer convention "
                              f"'{ANSWER_CONVENTION} X' (scorers look for it)")


def teacher_instruction(granularity: int, fmt: Format, answer_type: str = "number", library: str | None = None) -> str:
    table = load_library(library)
    return f"{table['granularity'][granularity]} {table['format'][fmt]} {table['answer'][answer_type]}"


def teacher_messages(granularity: int, fmt: Format, question: str, answer_type: str = "number",
                     library: str | None = None) -> list[dict[str, str]]:
    """OpenAI chat messages asking a teacher for one rationale."""
    return [
        {"role": "system", "content": teacher_instruction(granularity, fmt, answer_type, library)},
        {"role": "user", "content": question},
    ]


def prompt_hash(granularity: int, fmt: Format, answer_type: str, library: str | None = None) -> str:
    instruction = teacher_instruction(granularity, fmt, answer_type, library)
    return hashlib.sha256(instruction.encode()).hexdigest()[:12]
