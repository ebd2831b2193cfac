"""Teacher corpora: one parquet file per (dataset, teacher, granularity, format), shared by
every student trained on it.

A corpus holds every row the teacher gave: uid, question (as the student reads it), rationale,
answer (extracted from the rationale), gold, correct, matched (joined to a problem of the data
set: always, except for imported rows), and the teacher's token usage. It is written atomically
with a checksum, and never rebuilt once it exists
(unless it fails its checksum: then it is reported, moved aside and built again). Which rows a student trains on is the teacher's `filter`
(`training_rows`). Label formats (answer_only, human) come from the data set itself (here); the
others come from teachers (study.teachers.generate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from study.core import storage
from study.core.cells import CorpusKey
from study.core.datasets import Problem, extract_answer, problem_text, score
from study.core.spec import Format
from study.core.storage import StudyPaths


@dataclass(frozen=True)
class ChatReply:
    """One teacher reply: its text and token usage (what a corpus row is made from)."""

    text: str
    prompt_tokens: int
    completion_tokens: int


CORPUS_COLUMNS = ["uid", "question", "rationale", "answer", "gold", "correct", "matched",
                  "prompt_tokens", "completion_tokens"]


def corpus_rows(key: CorpusKey, problems: list[Problem], replies: list[ChatReply]) -> pd.DataFrame:
    dataset = key.dataset.name
    return pd.DataFrame(
        {
            "uid": [p.uid for p in problems],
            "question": [problem_text(p) for p in problems],
            "rationale": [r.text for r in replies],
            "answer": [extract_answer(dataset, r.text, p.choices) for p, r in zip(problems, replies)],
            "gold": [p.answer for p in problems],
            "correct": [score(dataset, r.text, p.answer, p.choices) for p, r in zip(problems, replies)],
            "matched": True,
            "prompt_tokens": [r.prompt_tokens for r in replies],
            "completion_tokens": [r.completion_tokens for r in replies],
        },
        columns=CORPUS_COLUMNS,
    )


def answer_sentence(answer: str) -> str:
    """The answer convention every rationale ends with (answer_first: starts with)."""
    return f"The answer is {answer}."


def label_rationale(problem: Problem, fmt: Format) -> str:
    """The target of a label format, from the data set itself: the gold answer alone
    (answer_only), or the data set's own rationale followed by it (human)."""
    answer = answer_sentence(problem.answer)
    if fmt == "answer_only":
        return answer
    if fmt != "human":
        raise ValueError(f"format '{fmt}' is not a label format (answer_only, human)")
    if problem.human_rationale is None:
        raise ValueError(f"problem {problem.uid} has no human rationale in its data set")
    return f"{problem.human_rationale.rstrip().rstrip('.')}. {answer}"


def rendered_corpus(key: CorpusKey, problems: list[Problem], rationale: Callable[[Problem], str]) -> pd.DataFrame:
    """A corpus rendered in process from the training problems, one rationale each."""
    return corpus_rows(key, problems, [ChatReply(rationale(p), 0, 0) for p in problems])


def label_corpus(key: CorpusKey, problems: list[Problem]) -> pd.DataFrame:
    """An answer_only / human corpus of these training problems, straight from their labels."""
    return rendered_corpus(key, problems, lambda problem: label_rationale(problem, key.format))


def training_rows(key: CorpusKey, corpus: pd.DataFrame) -> pd.DataFrame:
    """The rows students train on: with a teacher whose filter is `correct_only`, only the
    rationales whose answer matches gold; label corpora are gold by construction."""
    if key.teacher is None or key.teacher.filter == "all":
        return corpus
    kept = corpus[corpus["correct"]]
    if kept.empty:
        raise ValueError(f"corpus {key.name}: no row is correct, so filter 'correct_only' leaves nothing to train on")
    return kept.reset_index(drop=True)


def missing_corpora(paths: StudyPaths, keys: list[CorpusKey]) -> list[CorpusKey]:
    """Corpora to build: absent, or failing their checksum (reported, moved aside, rebuilt)."""
    return [key for key in keys if not storage.intact(paths.corpus(key.corpus_id), f"corpus {key.name}")]


def save_corpus(paths: StudyPaths, key: CorpusKey, frame: pd.DataFrame) -> None:
    storage.write_parquet_checked(paths.corpus(key.corpus_id), frame)


def load_corpus(paths: StudyPaths, key: CorpusKey) -> pd.DataFrame:
    """The corpus, verified against the checksum recorded when it was saved (ChecksumError if not)."""
    location = paths.corpus(key.corpus_id)
    if not storage.exists(location):
        raise FileNotFoundError(f"corpus {key.name} is missing: {location}")
    return storage.read_parquet_checked(location)
