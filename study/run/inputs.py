"""Checking a study's inputs before anything starts, and estimating corpus sizes offline.

`check_inputs` loads every data set's splits and finds every corpus's source (the data set's
own labels, a released file, or a program teacher's structured solutions), so a missing or
malformed file, or a grid point with no data behind it, is one clear error before Ray starts.
"""

from __future__ import annotations

import re

from study.core.cells import CorpusKey, corpus_keys
from study.core.datasets import DataError, load_split, problem_text, training_text
from study.core.spec import OpenAITeacher, ProgramTeacher, ReleasedTeacher, StudySpec
from study.teachers.client import TeacherError, api_key
from study.teachers.program import render
from study.teachers.released import find_release, read_release_rows

WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def check_inputs(spec: StudySpec) -> None:
    """Raise `DataError` for the first data set, released file or grid point that cannot work."""
    for dataset in spec.datasets:
        for split in ("train", "test"):
            if not load_split(dataset, split):
                raise DataError(f"dataset '{dataset.name}': the {split} split is empty")
    for key in corpus_keys(spec):
        _check_source(key)
    for teacher in spec.teachers:
        if isinstance(teacher, OpenAITeacher):
            try:
                api_key(teacher)
            except TeacherError as missing:
                raise DataError(str(missing)) from None


def _check_source(key: CorpusKey) -> None:
    problems = load_split(key.dataset, "train")
    if key.format == "human" and any(p.human_rationale is None for p in problems):
        raise DataError(f"dataset '{key.dataset.name}' has no human rationale; drop format 'human' for it")
    if isinstance(key.teacher, ProgramTeacher) and not problems[0].steps:
        raise DataError(f"teacher '{key.teacher.name}' (program) renders structured solutions, which only 'arith' "
                        f"has; use a released, vllm or openai teacher for '{key.dataset.name}'")
    if isinstance(key.teacher, ReleasedTeacher):  # read now, so a bad row stops the study before it starts
        read_release_rows(find_release(key.teacher, key.dataset.name, key.granularity, key.format).path)


def estimate_corpus_tokens(key: CorpusKey) -> int | None:
    """Prompt + rationale tokens of a corpus, estimated offline (words and symbols): label
    formats and the program teacher are rendered locally, released files read; None for a
    teacher that must generate."""
    problems = load_split(key.dataset, "train")
    dataset = key.dataset.name
    if key.teacher is None or isinstance(key.teacher, ProgramTeacher):
        texts = [training_text(dataset, problem_text(p), render(p, key.granularity, key.format)) for p in problems]
    elif isinstance(key.teacher, ReleasedTeacher):
        release = find_release(key.teacher, dataset, key.granularity, key.format)
        texts = [training_text(dataset, q, r) for q, r in read_release_rows(release.path)]
    else:
        return None
    return sum(len(WORD_OR_SYMBOL.findall(text)) for text in texts)
