"""Teacher corpora: built once per (dataset, teacher, granularity, format), shared by students.

A corpus is a parquet file of training rows: uid, question, rationale, answer (extracted from the
rationale), gold, correct, and the teacher's token usage. It is written atomically and never
rebuilt once it exists. Label formats (answer_only, human) come from the data set itself; the
others are asked of a teacher served on Ray Serve, over HTTP, with the one chat client.
"""

from __future__ import annotations

import re
import time

import pandas as pd

from study import storage
from study.cells import CorpusKey
from study.datasets import Problem, extract_answer, load_split, question_prompt, score
from study.prompts import teacher_messages
from study.spec import LABEL_FORMATS, StudySpec
from study.storage import StudyPaths
from study.teachers.client import ChatClient, ChatReply, ChatRequest
from study.teachers.program import program_model_id, render
from study.teachers.serve import TeacherEndpoint, deploy_teacher, start_serve, stop_teachers

WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")
CORPUS_COLUMNS = ["uid", "question", "rationale", "answer", "gold", "correct", "prompt_tokens", "completion_tokens"]


def _rows(key: CorpusKey, problems: list[Problem], replies: list[ChatReply]) -> pd.DataFrame:
    dataset = key.dataset.name
    return pd.DataFrame(
        {
            "uid": [p.uid for p in problems],
            "question": [p.question for p in problems],
            "rationale": [r.text for r in replies],
            "answer": [extract_answer(dataset, r.text) for r in replies],
            "gold": [p.answer for p in problems],
            "correct": [score(dataset, r.text, p.answer) for p, r in zip(problems, replies)],
            "prompt_tokens": [r.prompt_tokens for r in replies],
            "completion_tokens": [r.completion_tokens for r in replies],
        },
        columns=CORPUS_COLUMNS,
    )


def label_corpus(key: CorpusKey) -> pd.DataFrame:
    """answer_only / human rows straight from the data set's labels (no teacher involved)."""
    problems = load_split(key.dataset, "train")
    replies = [ChatReply(render(p, None, key.format), 0, 0) for p in problems]
    return _rows(key, problems, replies)


def _teacher_request(key: CorpusKey, problem: Problem) -> ChatRequest:
    assert key.teacher is not None and key.granularity is not None
    model = program_model_id(key.teacher.name, key.granularity, key.format)
    return ChatRequest(model=model, messages=teacher_messages(key.granularity, key.format, problem.question))


def teacher_corpus(key: CorpusKey, client: ChatClient) -> pd.DataFrame:
    problems = load_split(key.dataset, "train")
    replies = client.complete_all([_teacher_request(key, p) for p in problems], label=key.name)
    return _rows(key, problems, replies)


def missing_corpora(paths: StudyPaths, keys: list[CorpusKey]) -> list[CorpusKey]:
    return [key for key in keys if not storage.exists(paths.corpus(key.corpus_id))]


def build_corpora(spec: StudySpec, paths: StudyPaths, keys: list[CorpusKey]) -> None:
    """Build every missing corpus. Teachers are served only while their corpora are built."""
    todo = missing_corpora(paths, keys)
    if not todo:
        print(f"corpora: all {len(keys)} already built", flush=True)
        return
    for key in [k for k in todo if k.format in LABEL_FORMATS]:
        _save(paths, key, label_corpus(key))
    teacher_keys = [k for k in todo if k.format not in LABEL_FORMATS]
    if not teacher_keys:
        return
    port = start_serve()
    try:
        for teacher_name in dict.fromkeys(k.teacher_name for k in teacher_keys):
            endpoint = deploy_teacher(spec.teacher(teacher_name), spec.datasets, port)
            _build_with_teacher(paths, [k for k in teacher_keys if k.teacher_name == teacher_name], endpoint)
    finally:
        stop_teachers()


def _build_with_teacher(paths: StudyPaths, keys: list[CorpusKey], endpoint: TeacherEndpoint) -> None:
    client = ChatClient(base_url=endpoint.base_url)
    for key in keys:
        started = time.monotonic()
        frame = teacher_corpus(key, client)
        _save(paths, key, frame)
        print(f"corpus {key.name}: {len(frame)} rows, {frame['correct'].mean():.0%} correct, "
              f"{time.monotonic() - started:.1f}s", flush=True)


def _save(paths: StudyPaths, key: CorpusKey, frame: pd.DataFrame) -> None:
    storage.write_parquet_atomic(paths.corpus(key.corpus_id), frame)


def load_corpus(paths: StudyPaths, key: CorpusKey) -> pd.DataFrame:
    location = paths.corpus(key.corpus_id)
    if not storage.exists(location):
        raise FileNotFoundError(f"corpus {key.name} is missing: {location}")
    return storage.read_parquet(location)


def estimate_corpus_tokens(key: CorpusKey) -> int:
    """Prompt + rationale tokens of a corpus, estimated offline (words and symbols) by rendering
    it locally: label formats and the program teacher need no server for that."""
    problems = load_split(key.dataset, "train")
    texts = [question_prompt(key.dataset.name, p.question) + " " + render(p, key.granularity, key.format)
             for p in problems]
    return sum(len(WORD_OR_SYMBOL.findall(text)) for text in texts)
