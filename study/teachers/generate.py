"""Building teacher corpora: label corpora from the data set, imported corpora (kind `released`)
from files, and the rest generated: each needed teacher is served on Ray Serve (program, hf,
vllm) or reached where it runs (openai) and asked over HTTP with the one OpenAI-compatible
client. How is each kind's to say (study.teachers.registry). Served teachers run only while their
corpora are built. Every corpus is made from the study's stored splits (study.core.stored_splits),
which are stored first where missing: after that, only a released teacher's own files are read
from outside the study folder, and only while its corpora are imported.

Generation resumes: replies are saved in shards as they arrive (`ReplyCache`), so a re-run asks
only for the missing rows, and a corpus that exists is never asked for again. With
`samples_per_question` / `max_attempts` above 1, questions are sampled again until one sample
reaches the gold answer (the first correct sample is kept; otherwise the first sample, marked).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import pandas as pd

from study.core import storage
from study.core.cells import CorpusKey
from study.core.corpora import corpus_rows, label_corpus, missing_corpora, save_corpus
from study.core.datasets import Problem, dataset_info, problem_text, score
from study.core.prompts import teacher_messages
from study.core.spec import GeneratingTeacher, GenerationSettings, StudySpec, TeacherSpec
from study.core.storage import StudyPaths
from study.core.stored_splits import store_splits, stored_split
from study.teachers.cache import ReplyCache
from study.teachers.client import ChatClient, ChatReply, ChatRequest
from study.teachers.endpoint import ServeTarget, TeacherEndpoint, start_serve, stop_teacher
from study.teachers.kind import BUILT_IN_PROCESS
from study.core.program_render import program_model_id
from study.teachers.registry import kind_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusCard:
    """What generating a corpus cost and how good it is (saved beside the corpus as JSON)."""

    rows: int
    requests: int
    new_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    correct_rate: float
    unextractable_rate: float
    mean_completion_tokens: float
    seconds: float


def build_corpora(spec: StudySpec, paths: StudyPaths, keys: list[CorpusKey]) -> None:
    """Store the study's splits where missing, then build every missing corpus from them. Served
    teachers run only while their corpora are built."""
    store_splits(paths, spec.datasets)
    todo = missing_corpora(paths, keys)
    if not todo:
        log.info(f"corpora: all {len(keys)} already built")
        return
    for key in [k for k in todo if k.teacher is None]:
        save_corpus(paths, key, label_corpus(key, stored_split(paths, key.dataset, "train")))
    asked: list[CorpusKey] = []
    for key in [k for k in todo if k.teacher is not None]:
        kind = kind_of(key.teacher)
        if kind.source_of(key.teacher) in BUILT_IN_PROCESS:
            corpus = kind.offline_corpus(key, stored_split(paths, key.dataset, "train"))
            assert corpus is not None, f"{key.name}: a kind built in process builds its corpus offline"
            save_corpus(paths, key, corpus)
        else:
            asked.append(key)
    if not asked:
        return
    serve = start_serve(spec.name) if any(kind_of(k.teacher).source_of(k.teacher) == "served" for k in asked) else None
    problems = [p for dataset in spec.datasets for split in ("train", "test") for p in stored_split(paths, dataset, split)]
    for teacher_name in dict.fromkeys(k.teacher_name for k in asked):
        teacher = spec.teacher(teacher_name)
        endpoint = reach_teacher(teacher, problems, serve)
        try:
            client = kind_of(teacher).client(teacher, endpoint)
            for key in [k for k in asked if k.teacher_name == teacher_name]:
                generate_corpus(paths, key, client, endpoint)
        finally:
            stop_teacher(endpoint)  # this study's application only: Serve itself stays up for others


def reach_teacher(teacher: TeacherSpec, problems: list[Problem], serve: ServeTarget | None) -> TeacherEndpoint:
    """Serve the teacher on Ray Serve, or point at the endpoint where it answers; checked before
    any row (a served application that fails the check is deleted again). `problems`: every
    problem it may be asked about."""
    kind = kind_of(teacher)
    endpoint = kind.reach(teacher, problems, serve)
    if endpoint.model is not None:
        try:
            kind.client(teacher, endpoint).check_model(endpoint.model)
        except BaseException:
            stop_teacher(endpoint)
            raise
    return endpoint


def generate_corpus(paths: StudyPaths, key: CorpusKey, client: ChatClient, endpoint: TeacherEndpoint) -> pd.DataFrame:
    """Ask the teacher for every training question (only those not saved yet), then commit the
    corpus and its card atomically."""
    started = time.monotonic()
    settings = _settings(key.teacher)
    problems = stored_split(paths, key.dataset, "train")
    cache = ReplyCache(paths.generation_shards(key.corpus_id))
    chosen: dict[str, ChatReply] = {}
    pending, used, new_requests = list(problems), [], 0
    try:
        for attempt in range(settings.max_attempts):
            batch = [(p, _request(key, p, endpoint, settings, attempt * settings.samples_per_question + k))
                     for p in pending for k in range(settings.samples_per_question)]
            missing = [r for _, r in batch if cache.get(r) is None]
            new_requests += len(missing)
            client.complete_all(missing, label=f"{key.name} (attempt {attempt + 1})" if attempt else key.name,
                                on_reply=cache.add)
            replies = [(p, cache.get(r)) for p, r in batch]
            used += [reply for _, reply in replies]
            pending = _keep_first_correct(key, replies, chosen)
            if not pending:
                break
    finally:
        cache.flush()
    frame = corpus_rows(key, problems, [chosen[p.uid] for p in problems])
    card = _card(key, frame, used, new_requests, time.monotonic() - started)
    save_corpus(paths, key, frame)
    storage.write_text_atomic(paths.corpus_card(key.corpus_id), json.dumps(asdict(card), indent=2))
    _print_card(key, card)
    return frame


def _settings(teacher: TeacherSpec | None) -> GenerationSettings:
    return teacher.generation if isinstance(teacher, GeneratingTeacher) else GenerationSettings()


def _request(key: CorpusKey, problem: Problem, endpoint: TeacherEndpoint, settings: GenerationSettings,
             sample: int) -> ChatRequest:
    assert key.teacher is not None and key.granularity is not None
    model = endpoint.model or program_model_id(key.teacher.name, key.granularity, key.format)
    messages = teacher_messages(key.granularity, key.format, problem_text(problem),
                                dataset_info(key.dataset.name).answer_type, key.teacher.prompt_library)
    return ChatRequest(model=model, messages=messages, max_tokens=settings.max_tokens,
                       temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed + sample)


def _keep_first_correct(key: CorpusKey, replies: list[tuple[Problem, ChatReply]],
                        chosen: dict[str, ChatReply]) -> list[Problem]:
    """Record each problem's first correct reply (else its first reply); the still-wrong ones."""
    correct_now: set[str] = set()
    for problem, reply in replies:
        right = problem.uid not in correct_now and score(key.dataset.name, reply.text, problem.answer, problem.choices)
        if right:
            correct_now.add(problem.uid)
            chosen[problem.uid] = reply
        chosen.setdefault(problem.uid, reply)
    return list({p.uid: p for p, _ in replies if p.uid not in correct_now}.values())


def _card(key: CorpusKey, frame: pd.DataFrame, used: list[ChatReply], new_requests: int, seconds: float) -> CorpusCard:
    prompt_tokens = sum(r.prompt_tokens for r in used)
    completion_tokens = sum(r.completion_tokens for r in used)
    price = key.teacher.price if isinstance(key.teacher, GeneratingTeacher) else None
    cost = None if price is None else (prompt_tokens * price.usd_per_million_prompt_tokens
                                       + completion_tokens * price.usd_per_million_completion_tokens) / 1e6
    return CorpusCard(rows=len(frame), requests=len(used), new_requests=new_requests, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, cost_usd=cost, correct_rate=float(frame["correct"].mean()),
                      unextractable_rate=float(frame["answer"].isna().mean()),
                      mean_completion_tokens=float(frame["completion_tokens"].mean()), seconds=seconds)


def _print_card(key: CorpusKey, card: CorpusCard) -> None:
    cost = f", ${card.cost_usd:.4f}" if card.cost_usd is not None else ""
    log.info(f"corpus {key.name}: {card.rows} rows, {card.correct_rate:.0%} correct, "
             f"{card.unextractable_rate:.0%} without an answer, {card.requests} requests ({card.new_requests} new), "
             f"{card.prompt_tokens:,} prompt + {card.completion_tokens:,} completion tokens{cost}, {card.seconds:.1f}s")
