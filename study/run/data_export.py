"""A study's data for other tools: every built corpus and each data set's test split, as alpaca or
ShareGPT JSON lists, a LLaMA-Factory data folder (alpaca lists plus its `dataset_info.json`), or
Hugging Face `datasets` folders (`Dataset.save_to_disk`).

    cotstudy export STUDY_DIR --format alpaca | sharegpt | llamafactory | hf --out DIR

The folder it writes:

    corpora/<corpus_id>.json    one corpus, every row the teacher gave (hf: corpora/<corpus_id>/)
    test/<dataset>.json         the test split the students were evaluated on (hf: test/<dataset>/)
    dataset_info.json           llamafactory: one entry per file, named like it

A corpus row holds the question as the student reads it (answer choices included), the teacher's
rationale and what the corpus knows of it: `uid`, `answer` (extracted), `gold`, `correct`,
`matched`, `corpus_id`, `dataset`, `teacher`, `granularity`, `format`. Students trained only on
the `correct` rows when the teacher's filter is `correct_only` (the default): filter on that
column to train on what they trained on. A test row's response is its gold answer.

A LLaMA-Factory folder goes back in through a `released` teacher whose `dataset_info:` names its
`dataset_info.json` and whose `files:` list the corpora (README, "Data out and in"). No Ray here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from study.core import storage
from study.core.cells import CorpusKey, corpus_keys
from study.core.corpora import load_corpus
from study.core.datasets import DatasetSpec, problem_text
from study.core.stored_splits import stored_split
from study.core.spec import StudySpec
from study.core.storage import StudyPaths

ExportFormat = Literal["alpaca", "sharegpt", "llamafactory", "hf"]
EXPORT_FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "llamafactory", "hf")
# LLaMA-Factory's alpaca columns (its data/README.md): the question, an empty input, the response
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
DATASET_INFO = "dataset_info.json"


@dataclass(frozen=True)
class Table:
    """One file to write: a corpus or a test split, with the name it goes by."""

    name: str  # the corpus id, or `<dataset>_test`
    folder: str  # corpora | test
    stem: str  # the file (or folder) name without suffix
    question: pd.Series
    response: pd.Series
    extra: pd.DataFrame  # every other column, kept beside the formatted ones


def corpus_table(key: CorpusKey, corpus: pd.DataFrame) -> Table:
    described = corpus.drop(columns=["question", "rationale", "prompt_tokens", "completion_tokens"]).assign(
        corpus_id=key.corpus_id, dataset=key.dataset.name, teacher=key.teacher_name, granularity=key.granularity,
        format=key.format)
    return Table(key.corpus_id, "corpora", key.corpus_id, corpus["question"], corpus["rationale"], described)


def test_table(paths: StudyPaths, dataset: DatasetSpec) -> Table:
    """The test split the study's cells were scored on: the copy stored in its folder."""
    problems = stored_split(paths, dataset, "test")
    extra = pd.DataFrame({"uid": [p.uid for p in problems], "dataset": dataset.name})
    return Table(f"{dataset.name}_test", "test", dataset.name, pd.Series([problem_text(p) for p in problems]),
                 pd.Series([p.answer for p in problems]), extra)


def study_tables(spec: StudySpec, paths: StudyPaths) -> tuple[list[Table], list[CorpusKey]]:
    """Every built corpus and every data set's test split, read before anything is written (a bad
    data file fails here); and the corpora not built yet."""
    keys = corpus_keys(spec)
    built = [key for key in keys if storage.exists(paths.corpus(key.corpus_id))]
    tables = [corpus_table(key, load_corpus(paths, key)) for key in built]
    if built:  # a study that built nothing has stored nothing either: the caller says so
        tables += [test_table(paths, dataset) for dataset in spec.datasets]
    return tables, [key for key in keys if key not in built]


def _records(table: Table, shape: Callable[[str, str], dict]) -> list[dict]:
    extra = table.extra.astype(object).where(table.extra.notna(), None).to_dict("records")
    return [{**shape(question, response), **row} for question, response, row in
            zip(table.question, table.response, extra)]


def _alpaca(question: str, response: str) -> dict:
    return {"instruction": question, "input": "", "output": response}


def _sharegpt(question: str, response: str) -> dict:
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": response}]}


def _write_json(table: Table, folder: Path, shape: Callable[[str, str], dict]) -> Path:
    path = folder / table.folder / f"{table.stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_records(table, shape), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _write_hf(table: Table, folder: Path) -> Path:
    from datasets import Dataset  # only this format needs it

    path = folder / table.folder / table.stem
    frame = pd.concat([table.extra.reset_index(drop=True),
                       pd.DataFrame({"question": table.question.to_numpy(), "response": table.response.to_numpy()})],
                      axis=1)
    Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    return path


def llamafactory_info(tables: list[Table]) -> dict:
    """LLaMA-Factory's dataset_info.json: each file by name, alpaca formatting, its columns."""
    return {table.name: {"file_name": f"{table.folder}/{table.stem}.json", "formatting": "alpaca",
                         "columns": dict(ALPACA_COLUMNS)} for table in tables}


def write_tables(tables: list[Table], fmt: ExportFormat, folder: Path) -> list[Path]:
    """The tables in `fmt` under a local folder; the files written."""
    if fmt == "hf":
        return [_write_hf(table, folder) for table in tables]
    shape = _sharegpt if fmt == "sharegpt" else _alpaca
    written = [_write_json(table, folder, shape) for table in tables]
    if fmt == "llamafactory":
        info = folder / DATASET_INFO
        info.write_text(json.dumps(llamafactory_info(tables), indent=2), encoding="utf-8")
        written.append(info)
    return written
