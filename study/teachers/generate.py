"""Generating teacher corpora: serve each needed teacher on Ray Serve, ask it over HTTP with the
one OpenAI-compatible client, and save each corpus. Teachers run only while their corpora are
built."""

from __future__ import annotations

import time

import pandas as pd

from study.cells import CorpusKey
from study.corpora import corpus_rows, label_corpus, missing_corpora, save_corpus
from study.datasets import Problem, load_split
from study.prompts import teacher_messages
from study.spec import LABEL_FORMATS, StudySpec
from study.storage import StudyPaths
from study.teachers.client import ChatClient, ChatRequest
from study.teachers.program import program_model_id
from study.teachers.serve import TeacherEndpoint, deploy_teacher, start_serve, stop_teachers


def _teacher_request(key: CorpusKey, problem: Problem) -> ChatRequest:
    assert key.teacher is not None and key.granularity is not None
    model = program_model_id(key.teacher.name, key.granularity, key.format)
    return ChatRequest(model=model, messages=teacher_messages(key.granularity, key.format, problem.question))


def teacher_corpus(key: CorpusKey, client: ChatClient) -> pd.DataFrame:
    problems = load_split(key.dataset, "train")
    replies = client.complete_all([_teacher_request(key, p) for p in problems], label=key.name)
    return corpus_rows(key, problems, replies)


def build_corpora(spec: StudySpec, paths: StudyPaths, keys: list[CorpusKey]) -> None:
    """Build every missing corpus. Teachers are served only while their corpora are built."""
    todo = missing_corpora(paths, keys)
    if not todo:
        print(f"corpora: all {len(keys)} already built", flush=True)
        return
    for key in [k for k in todo if k.format in LABEL_FORMATS]:
        save_corpus(paths, key, label_corpus(key))
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
        save_corpus(paths, key, frame)
        print(f"corpus {key.name}: {len(frame)} rows, {frame['correct'].mean():.0%} correct, "
              f"{time.monotonic() - started:.1f}s", flush=True)


