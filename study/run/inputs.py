"""Checking a study's inputs before anything starts, and estimating corpus sizes offline.

`check_inputs` loads every data set's splits and finds every corpus's source (the data set's
own labels, or what each teacher's kind checks: a released file, a program teacher's structured
solutions, an API key) and, for Socratic cells on a data set's own annotations, the annotations,
so a missing or malformed file, or a grid point with no data behind it, is one clear error before
Ray starts.
"""

from __future__ import annotations

import os
import re

from study.core import storage
from study.core.cells import CorpusKey, corpus_keys
from study.core.corpora import label_rationale
from study.core.datasets import DataError, DatasetSpec, dataset_info, load_split, problem_text, training_text
from study.core.datasets.splits import split_files
from study.core.spec import SocraticMethod, StudySpec
from study.teachers.registry import kind_of

WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def check_inputs(spec: StudySpec) -> None:
    """Raise `DataError` for the first data set, released file or grid point that cannot work."""
    for dataset in spec.datasets:
        for split in ("train", "test"):
            if not load_split(dataset, split):
                raise DataError(f"dataset '{dataset.name}': the {split} split is empty")
        check_test_is_not_train(dataset)
    keys = corpus_keys(spec)
    for key in keys:
        if key.format == "human" and any(p.human_rationale is None for p in load_split(key.dataset, "train")):
            raise DataError(f"dataset '{key.dataset.name}' has no human rationale; drop format 'human' for it")
    for teacher in spec.teachers:
        kind_of(teacher).check(teacher, [key for key in keys if key.teacher_name == teacher.name])
    check_decompositions(spec)


def check_decompositions(spec: StudySpec) -> None:
    """A Socratic cell on a data set's own annotations needs every training problem to carry them
    (GSM8K's Socratic files do; its main files and the other data sets do not)."""
    socratic = [method for method in spec.methods if isinstance(method, SocraticMethod)]
    for key in corpus_keys(spec):
        if not any(method.decomposition_source(key.format, key.teacher) == "annotations" for method in socratic):
            continue
        bare = [p.uid for p in load_split(key.dataset, "train") if not p.sub_questions]
        if bare:
            raise DataError(f"dataset '{key.dataset.name}', format '{key.format}': method socratic trains on the "
                            f"data set's Socratic annotations, and {len(bare)} training problems have none "
                            f"(first: {bare[0]}); for GSM8K set `train_file: train_socratic.jsonl` (the hub's "
                            "socratic config), else use format bsm or a program teacher")


def check_test_is_not_train(dataset: DatasetSpec) -> None:
    """A test file that is the training file would score students on what they trained on:
    refused, not evaluated (a source that divides one file into both splits is not that)."""
    info = dataset_info(dataset.name)
    if info.generated or dataset.hub is not None:
        return
    source = info.split_source(dataset.split)
    train_file, test_file = split_files(dataset, source)
    if test_file is not None and source.divide is None and _same_file(test_file, train_file):
        raise DataError(f"dataset '{dataset.name}': {test_file} is both its train and its test file: students "
                        "would be tested on the problems they trained on")


def _same_file(first: str, second: str) -> bool:
    if storage.is_uri(first) or storage.is_uri(second):
        return storage.normalize_location(first) == storage.normalize_location(second)
    return os.path.realpath(first) == os.path.realpath(second)


def estimate_corpus_tokens(key: CorpusKey) -> int | None:
    """Prompt + rationale tokens of a corpus, estimated offline (words and symbols): label
    formats are rendered from the data set, a teacher's corpus as its kind says (the program
    teacher renders, released files are read); None for a teacher that must generate."""
    lengths = example_token_counts(key)
    return None if lengths is None else sum(lengths)


def example_token_counts(key: CorpusKey) -> list[int] | None:
    """Each training example's estimated tokens (words and symbols), as `estimate_corpus_tokens` counts them."""
    dataset = key.dataset.name
    if key.teacher is None:
        texts: list[str] | None = [training_text(dataset, problem_text(p), label_rationale(p, key.format))
                                   for p in load_split(key.dataset, "train")]
    else:
        texts = kind_of(key.teacher).training_texts(key)
    if texts is None:
        return None
    return [count_tokens(text) for text in texts]


def count_tokens(text: str) -> int:
    """The offline token estimate: words and symbols (a student's tokenizer may split numbers and
    rare words further)."""
    return len(WORD_OR_SYMBOL.findall(text))
