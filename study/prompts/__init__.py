"""Teacher prompts, kept as data (instructions.yaml) rather than strings in code."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from study.spec import Format


@lru_cache(maxsize=1)
def _instructions() -> dict:
    return yaml.safe_load(resources.files("study.prompts").joinpath("instructions.yaml").read_text())


def teacher_instruction(granularity: int, fmt: Format) -> str:
    table = _instructions()
    return f"{table['granularity'][granularity]} {table['format'][fmt]}"


def teacher_messages(granularity: int, fmt: Format, question: str) -> list[dict[str, str]]:
    """OpenAI chat messages asking a teacher for one rationale."""
    return [
        {"role": "system", "content": teacher_instruction(granularity, fmt)},
        {"role": "user", "content": question},
    ]
