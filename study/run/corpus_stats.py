"""Corpus statistics: how long, how many steps, how often right, per corpus.

`cotstudy corpus-stats SPEC` describes every corpus a spec needs (the stored corpus when built,
else the corpus as it would be built: label formats, released files and the program teacher
need no server); `cotstudy corpus-stats --files GLOB...` describes released files directly,
with gold answers from the data set (`--data-dir`) or, when that is absent, from the paper's
answer-only file among the globs.

Token counts are words and symbols (`\\w+|[^\\w\\s]`), the same count for every teacher and
independent of any student tokenizer. A step is a sentence of the rationale, not counting the
closing "The answer is X" sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.core import storage
from study.core.cells import CorpusKey, corpus_keys
from study.core.corpora import label_corpus, load_corpus
from study.core.datasets import DataError, Problem, load_split
from study.run.inputs import WORD_OR_SYMBOL
from study.core.spec import DatasetSpec, StudySpec
from study.core.storage import StudyPaths
from study.teachers.registry import kind_of
from study.teachers.released import ReleaseFile, import_release, parse_release_name, problems_from_answer_file

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
ANSWER_SENTENCE = re.compile(r"^the answer is", re.IGNORECASE)
STATS_COLUMNS = ["dataset", "teacher", "granularity", "format", "source", "rows", "rationale_tokens_mean",
                 "rationale_tokens_p50", "rationale_tokens_p95", "steps_mean", "correct_rate", "unextractable_rate",
                 "unmatched"]


@dataclass(frozen=True)
class CorpusSource:
    """One corpus to describe: what it is and where its rows came from."""

    dataset: str
    teacher: str | None
    granularity: int | None
    format: str
    source: str
    rows: pd.DataFrame


def count_tokens(text: str) -> int:
    return len(WORD_OR_SYMBOL.findall(text))


def count_steps(rationale: str) -> int:
    sentences = [s for s in SENTENCE_END.split(rationale.strip()) if s]
    return sum(1 for s in sentences if not ANSWER_SENTENCE.match(s))


def describe(corpus: CorpusSource) -> dict:
    rows = corpus.rows
    tokens = np.array([count_tokens(r) for r in rows["rationale"]]) if len(rows) else np.zeros(1)
    return {
        "dataset": corpus.dataset, "teacher": corpus.teacher, "granularity": corpus.granularity,
        "format": corpus.format, "source": corpus.source, "rows": len(rows),
        "rationale_tokens_mean": float(tokens.mean()), "rationale_tokens_p50": float(np.percentile(tokens, 50)),
        "rationale_tokens_p95": float(np.percentile(tokens, 95)),
        "steps_mean": float(np.mean([count_steps(r) for r in rows["rationale"]])) if len(rows) else 0.0,
        "correct_rate": float(rows["correct"].mean()) if len(rows) else 0.0,
        "unextractable_rate": float(rows["answer"].isna().mean()) if len(rows) else 0.0,
        "unmatched": int((~rows["matched"].astype(bool)).sum()) if "matched" in rows else 0,
    }


def stats_table(corpora: list[CorpusSource]) -> pd.DataFrame:
    table = pd.DataFrame([describe(c) for c in corpora], columns=STATS_COLUMNS)
    table["granularity"] = table["granularity"].astype("Int64")
    return table.sort_values(["dataset", "teacher", "format", "granularity"], na_position="first", ignore_index=True)


def spec_corpora(spec: StudySpec) -> list[CorpusSource]:
    """Every corpus the spec needs: stored when built, else built in memory where no server is
    needed (label formats, released files, the program teacher); generated-only ones skipped."""
    paths = StudyPaths.of(spec.storage, spec.name)
    found = []
    for key in corpus_keys(spec):
        if storage.exists(paths.corpus(key.corpus_id)):
            found.append(_key_source(key, paths.corpus(key.corpus_id), load_corpus(paths, key)))
            continue
        problems = load_split(key.dataset, "train")
        rows = label_corpus(key, problems) if key.teacher is None else kind_of(key.teacher).offline_corpus(key, problems)
        if rows is None:
            print(f"skipped {key.name}: not built yet, and its teacher must generate it")
            continue
        found.append(_key_source(key, "not built yet: rendered or imported now", rows))
    return found


def _key_source(key: CorpusKey, source: str, rows: pd.DataFrame) -> CorpusSource:
    return CorpusSource(key.dataset.name, key.teacher_name, key.granularity, key.format, source, rows)


def file_corpora(patterns: list[str], data_dir: str) -> list[CorpusSource]:
    """Released files described directly; gold from <data_dir>/<dataset>, else from the
    answer-only file among them."""
    files = [parse_release_name(path) for pattern in patterns for path in _glob(pattern)]
    gold: dict[str, list[Problem]] = {}
    found = []
    for release in files:
        if release.dataset not in gold:
            gold[release.dataset] = _gold_problems(release.dataset, files, data_dir)
        rows, report = import_release(release, release.dataset, gold[release.dataset])
        print(report.line())
        found.append(CorpusSource(release.dataset, release.teacher, release.granularity, release.format,
                                  str(release.path), rows))
    return found


def _glob(pattern: str) -> list[str]:
    matches = storage.glob_files(pattern)
    if not matches:
        raise DataError(f"no file matches {pattern}")
    return matches


def _gold_problems(dataset: str, files: list[ReleaseFile], data_dir: str) -> list[Problem]:
    try:
        spec = DatasetSpec(name=dataset)  # type: ignore[arg-type]  # its paper split, where its files are by default
        return load_split(spec.model_copy(update={"path": storage.join(data_dir, spec.folder())}), "train")
    except DataError as missing:
        answer_files = [f for f in files if f.dataset == dataset and f.format == "answer_only"]
        if not answer_files:
            raise DataError(f"no gold answers for {dataset}: {missing}; or include its answer-only file "
                            f"(e.g. {dataset}_only_ans.json) among the files") from None
        print(f"{dataset}: gold answers from {answer_files[0].path} (the data set's files are absent)")
        return problems_from_answer_file(dataset, answer_files[0].path)

