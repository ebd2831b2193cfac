"""A study's data, stored with it: each data set's train and test problems as the cells see them
(after its split rule), written into the study folder at `run` and read from there by everything
after: corpus building, the program teacher's server, every worker's evaluation, `resume`.

So nothing after `run` reads the launching machine's data folder (or the hub): a study resumes from
any machine that reaches its storage. Layout: `<study>/data/<dataset>/{train,test}.jsonl`, one
problem per line (the JSON of its fields), written with a checksum and verified on every read,
like corpora. A split that is there is never written again; one that fails its checksum is
reported, moved aside and written again from the data set's source.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from study.core import storage
from study.core.datasets import Choice, DatasetSpec, Problem, Step, SubQuestion, load_split
from study.core.storage import StudyPaths

SPLITS = ("train", "test")


def store_splits(paths: StudyPaths, datasets: list[DatasetSpec]) -> None:
    """Write every split missing from storage, read from its data set's source (`DataError` if
    that cannot be read); splits already stored are kept."""
    for dataset in missing_splits(paths, datasets):
        for split in SPLITS:
            problems = load_split(dataset, split)
            storage.write_bytes_checked(paths.split(dataset.name, split), _jsonl(problems))
        print(f"data {dataset.name}: stored in the study ({', '.join(SPLITS)})", flush=True)


def missing_splits(paths: StudyPaths, datasets: list[DatasetSpec]) -> list[DatasetSpec]:
    """Data sets whose splits are absent from storage or fail their checksum (moved aside)."""
    return [dataset for dataset in datasets
            if not all(storage.intact(paths.split(dataset.name, split), f"data {dataset.name}") for split in SPLITS)]


def stored_split(paths: StudyPaths, dataset: DatasetSpec, split: str) -> list[Problem]:
    """A data set's train or test problems from the study folder, verified against their checksum
    (`FileNotFoundError` naming the file when absent, `ChecksumError` when corrupted)."""
    location = paths.split(dataset.name, split)
    if not storage.exists(location):
        raise FileNotFoundError(f"{location}: the {split} split of '{dataset.name}' is not stored in the study; "
                                "'cotstudy resume STUDY --data-dir DIR' stores it again")
    lines = storage.read_bytes_checked(location).decode().splitlines()
    return [_problem(json.loads(line)) for line in lines if line]


def _jsonl(problems: list[Problem]) -> bytes:
    return "".join(json.dumps(asdict(problem), ensure_ascii=False) + "\n" for problem in problems).encode()


def _problem(fields: dict) -> Problem:
    return Problem(**{**fields, "choices": tuple(Choice(**choice) for choice in fields["choices"]),
                      "steps": tuple(Step(**step) for step in fields["steps"]),
                      # absent from splits stored before Socratic annotations were read: none then
                      "sub_questions": tuple(SubQuestion(**pair) for pair in fields.get("sub_questions", ()))})
