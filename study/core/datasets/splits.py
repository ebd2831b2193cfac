"""Where each data set's files are and how they divide into train and test.

Sizes (train / test), as the loaders give them:
- svamp: 700 / 300, the paper's split: train = the 700 problems whose questions the paper
  released teacher CoT for (their SVAMP.json IDs ship in `split_ids/svamp_train_ids.txt`),
  test = the other 300 problems of SVAMP.json.
- gsm8k: 7,473 / 1,319 (the official train.jsonl / test.jsonl).
- aqua: 97,467 / 254 (official train.json / test.json, JSON lines).
- math: 7,500 / 5,000 (official train/ and test/ folders, one JSON per problem; or jsonl / json lists).
- csqa: 9,741 / 1,221 (official train_rand_split.jsonl / dev_rand_split.jsonl: the test labels are hidden).
- obqa: 4,957 / 500 (official Main train.jsonl / test.jsonl).
- strategyqa: 2,290 labelled questions (strategyqa_train.json; the official test labels are hidden),
  divided 1,603 / 687 (70 / 30) by a hash of each qid, unless a test file is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from study.core.datasets.problems import Problem
from study.core.datasets.registry import DatasetSpec
from study.core.datasets.sources import (
    DataError,
    Record,
    RecordParser,
    alpaca_parser,
    hub_commonsense_qa,
    hub_openbookqa,
    is_alpaca,
    parse_aqua,
    parse_gsm8k,
    parse_math,
    parse_qa_choices,
    parse_records,
    parse_strategyqa,
    parse_svamp,
    read_records,
    require_json_list,
)

Splits = dict[str, list[Problem]]


@dataclass(frozen=True)
class Source:
    """A data set's source files: candidate names (the first that exists is read), the record
    parser, how one file divides into both splits where the source has no test file, and the
    Hugging Face hub copy."""

    parse: RecordParser
    train_names: tuple[str, ...]
    test_names: tuple[str, ...]
    hub_id: str
    hub_configs: tuple[str | None, ...] = (None,)
    hub_splits: tuple[str, str] = ("train", "test")
    hub_row: Callable[[Record], Record] | None = None
    divide: Callable[[list[Problem]], Splits] | None = None


def svamp_paper_split(problems: list[Problem]) -> Splits:
    listing = resources.files("study.core.datasets").joinpath("split_ids/svamp_train_ids.txt").read_text()
    train_ids = {line.strip() for line in listing.splitlines() if line.strip() and not line.startswith("#")}
    train = [p for p in problems if p.uid in train_ids]
    if len(train) != len(train_ids):
        raise DataError(f"SVAMP: found {len(train)} of the paper's {len(train_ids)} training IDs; is this SVAMP.json?")
    return {"train": train, "test": [p for p in problems if p.uid not in train_ids]}


def hashed_split(test_share: float) -> Callable[[list[Problem]], Splits]:
    """Divide by a hash of each uid: stable under reordering and across machines."""

    def divide(problems: list[Problem]) -> Splits:
        def in_test(problem: Problem) -> bool:
            return int(hashlib.sha256(problem.uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < test_share

        return {"train": [p for p in problems if not in_test(p)], "test": [p for p in problems if in_test(p)]}

    return divide


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")

SOURCES: dict[str, Source] = {
    "svamp": Source(parse_svamp, ("SVAMP.json",), (), "ChilleD/SVAMP", divide=svamp_paper_split),
    "gsm8k": Source(parse_gsm8k, ("train.jsonl",), ("test.jsonl",), "openai/gsm8k", hub_configs=("main",)),
    "aqua": Source(parse_aqua, ("train.json", "train.jsonl"), ("test.json", "test.jsonl"), "deepmind/aqua_rat",
                   hub_configs=("raw",)),
    "math": Source(parse_math, ("train", "train.jsonl", "train.json"), ("test", "test.jsonl", "test.json"),
                   "EleutherAI/hendrycks_math", hub_configs=MATH_SUBJECTS),
    "csqa": Source(parse_qa_choices, ("train_rand_split.jsonl", "train.jsonl"),
                   ("dev_rand_split.jsonl", "dev.jsonl", "validation.jsonl"), "tau/commonsense_qa",
                   hub_splits=("train", "validation"), hub_row=hub_commonsense_qa),
    "obqa": Source(parse_qa_choices, ("train.jsonl", "train_complete.jsonl"), ("test.jsonl", "test_complete.jsonl"),
                   "allenai/openbookqa", hub_configs=("additional",), hub_row=hub_openbookqa),
    "strategyqa": Source(parse_strategyqa, ("strategyqa_train.json", "train.json"), ("test.json",),
                         "ChilleD/StrategyQA", divide=hashed_split(0.3)),
}


def load_source_splits(spec: DatasetSpec, source: Source, extract: Callable[[str], str | None]) -> Splits:
    """Train and test problems of a data set from its files (or the hub when `hub:` is set)."""
    if spec.hub is not None:
        return _hub_splits(spec, source)
    folder = Path(spec.path if spec.path is not None else spec.name)
    if not folder.is_dir():
        raise DataError(f"dataset '{spec.name}': no folder {folder}; set the dataset's `path:`, the spec's "
                        f"`data_dir:`, or --data-dir")
    train_file = _find(folder, spec.train_file, source.train_names, spec.name, "train")
    test_file = _find(folder, spec.test_file, source.test_names, spec.name, "test", required=source.divide is None)
    problems = _read_problems(train_file, source.parse, extract)
    if test_file is None or (test_file == train_file and source.divide is not None):
        assert source.divide is not None
        return source.divide(problems)
    return {"train": problems, "test": _read_problems(test_file, source.parse, extract)}


def _find(folder: Path, given: str | None, names: tuple[str, ...], dataset: str, split: str,
          required: bool = True) -> Path | None:
    if given is not None:
        if not (folder / given).exists():
            raise DataError(f"dataset '{dataset}': {split} file {folder / given} does not exist")
        return folder / given
    found = next((folder / name for name in names if (folder / name).exists()), None)
    if found is None and required:
        raise DataError(f"dataset '{dataset}': no {split} file in {folder} (looked for {', '.join(names)}); "
                        f"name it with `{split}_file:`")
    return found


def _read_problems(path: Path, parse: RecordParser, extract: Callable[[str], str | None]) -> list[Problem]:
    records = read_records(path)
    if not records:
        raise DataError(f"{path}: holds no rows")
    if is_alpaca(records[0]):
        require_json_list(path, "an alpaca file")
    parser = alpaca_parser(extract) if is_alpaca(records[0]) else parse
    return parse_records(path, records, parser)


def _hub_splits(spec: DatasetSpec, source: Source) -> Splits:
    """The hub copy, mapped to the source's own record shape (needs the hub; not used in tests)."""
    from datasets import load_dataset

    splits: Splits = {}
    for name, hub_split in zip(("train", "test"), source.hub_splits):
        rows: list[Record] = []
        for config in source.hub_configs:
            rows += [dict(row) for row in load_dataset(spec.hub, config, split=hub_split)]
        if source.hub_row is not None:
            rows = [source.hub_row(row) for row in rows]
        splits[name] = parse_records(Path(f"hub:{spec.hub}/{hub_split}"), rows, source.parse)
    if source.divide is not None:
        return source.divide(splits["train"] + splits["test"])
    return splits
