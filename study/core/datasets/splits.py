"""How a data set's files become its train and test problems.

The files are the ones the `Source` of the spec's split (paper or official) names (the first
candidate that exists, unless the spec names one), read with its record parser, or an alpaca
list whose gold is read with the source's `gold` reader (else the data set's extractor); a source
with no test file is divided by its `divide` rule. `hub:` reads the Hugging Face copy instead.
A missing file is one `DataError` naming the file, the folder looked in and the split; a paper
split is never replaced by another. Each data set's sizes and splits are documented in its own
module (`svamp.py`, ...).
"""

from __future__ import annotations


import study.core.storage as storage  # the module path, so the layer check sees storage, not all of study.core
from study.core.datasets.descriptor import Source, Splits
from study.core.datasets.golds import GoldReader
from study.core.datasets.problems import Problem
from study.core.datasets.registry import DatasetSpec
from study.core.datasets.sources import (
    DataError,
    Record,
    RecordParser,
    alpaca_problems,
    is_alpaca,
    location_exists,
    location_is_dir,
    parse_records,
    read_records,
    require_json_list,
)


def load_source_splits(spec: DatasetSpec, source: Source, read_gold: GoldReader) -> Splits:
    """Train and test problems of a data set from its files (or the hub when `hub:` is set)."""
    if spec.hub is not None:
        return _hub_splits(spec, source)  # the official split's hub copy (the spec refuses hub: with a paper split)
    train_file, test_file = split_files(spec, source)
    problems = _read_problems(train_file, source.parse, read_gold)
    if test_file is None or (test_file == train_file and source.divide is not None):
        assert source.divide is not None
        return source.divide(problems)
    return {"train": problems, "test": _read_problems(test_file, source.parse, read_gold)}


def split_files(spec: DatasetSpec, source: Source) -> tuple[str, str | None]:
    """The train file and the test file (None: the train file is divided) of a data set read from files."""
    folder = str(spec.path if spec.path is not None else spec.folder())
    if not location_is_dir(folder):
        if location_exists(folder):
            raise DataError(f"dataset '{spec.name}': path: {folder} is a file; `path:` names the folder of the "
                            "split's files (name a file in it with `train_file:` / `test_file:`)")
        raise DataError(f"dataset '{spec.name}': no folder {folder} for its {spec.split} split; set the dataset's "
                        f"`path:`, the spec's `data_dir:`, or --data-dir{_help(source)}")
    train_file = _find(folder, spec.train_file, source, spec, "train")
    test_file = _find(folder, spec.test_file, source, spec, "test", required=source.divide is None)
    return train_file, test_file


def _find(folder: str, given: str | None, source: Source, spec: DatasetSpec, split: str,
          required: bool = True) -> str | None:
    if given is not None:
        location = given if storage.is_uri(given) or given.startswith("/") else storage.join(folder, given)
        if not location_exists(location):
            raise DataError(f"dataset '{spec.name}': {split} file {location} does not exist")
        return location
    names = source.train_names if split == "train" else source.test_names
    found = next((storage.join(folder, name) for name in names if location_exists(storage.join(folder, name))), None)
    if found is None and required:
        raise DataError(f"dataset '{spec.name}': no {split} file of its {spec.split} split in {folder} "
                        f"(looked for {', '.join(names)}); "
                        f"name it with `{split}_file:`{_help(source)}")
    return found


def _help(source: Source) -> str:
    return f"; {source.missing_help}" if source.missing_help else ""


def _read_problems(path: str, parse: RecordParser, read_gold: GoldReader) -> list[Problem]:
    records = read_records(path)
    if not records:
        raise DataError(f"{path}: holds no rows")
    if is_alpaca(records[0]):
        require_json_list(path, "an alpaca file")
        return alpaca_problems(path, records, read_gold)
    return parse_records(path, records, parse)


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
        splits[name] = parse_records(f"hub:{spec.hub}/{hub_split}", rows, source.parse)
    if source.divide is not None:
        return source.divide(splits["train"] + splits["test"])
    return splits
