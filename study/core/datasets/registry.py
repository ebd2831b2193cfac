"""Which data sets exist, and how a study spec names one (`DatasetSpec`).

`DATASETS` is the one list of data sets: each entry is the `DATASET` descriptor of one module of
this package. Everything else is derived from it: the spec's allowed names (`DatasetName`, so the
JSON schema lists them and a bad name is one `SpecError` naming the field), `dataset_info`, and
the names released CoT files use (`RELEASE_ALIASES`). A new data set is one new module plus its
entry here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from study.core.datasets import aqua, arith, csqa, gsm8k, math, obqa, strategyqa, svamp
from study.core.datasets.arith import ArithSettings
from study.core.datasets.descriptor import DatasetInfo, SplitName
from study.core.datasets.settings import Frozen

DATASETS: tuple[DatasetInfo, ...] = (
    arith.DATASET, svamp.DATASET, gsm8k.DATASET, aqua.DATASET, math.DATASET, csqa.DATASET, obqa.DATASET,
    strategyqa.DATASET,
)
REGISTRY: dict[str, DatasetInfo] = {dataset.name: dataset for dataset in DATASETS}
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)
DatasetName = Literal[*DATASET_NAMES]  # built from the registry; pydantic checks it and lists it in the schema


def _release_aliases(datasets: tuple[DatasetInfo, ...]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for dataset in datasets:
        for alias in dataset.release_names:
            if aliases.setdefault(alias, dataset.name) != dataset.name:
                raise ValueError(f"release name '{alias}' is claimed by both '{aliases[alias]}' and '{dataset.name}'")
    return aliases


# the first word of a released file's name (lower-case) -> the data set it holds
RELEASE_ALIASES: dict[str, str] = _release_aliases(DATASETS)


def dataset_info(dataset: str) -> DatasetInfo:
    try:
        return REGISTRY[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset '{dataset}'; known: {sorted(REGISTRY)}") from None


class DatasetSpec(Frozen):
    """A registered data set, which of its splits, and where its files are.

    `split` is the paper's train / test split (arXiv 2502.18001) or the data set's official one;
    it is part of every cell id. The split's files are found at `path` when given, else in the
    folder its descriptor names: `<data_dir>/paper/<name>` for a paper split of its own (AQuA,
    MATH, CSQA, OBQA, StrategyQA), `<data_dir>/<name>` otherwise; relative paths are relative to
    `data_dir`. `hub` loads the Hugging Face hub copy of the official split instead (needs the
    hub). Locations are not part of any cell or corpus id: moving the data keeps every result.
    """

    name: DatasetName = Field(description="Registered data set.")
    split: SplitName = Field("paper", description="The paper's train / test split, or the data set's official one.")
    path: str | None = Field(
        None, description="Folder (or file) holding the split's files; default <data_dir>/paper/<name> for a paper "
                          "split of its own, else <data_dir>/<name>.")
    train_file: str | None = Field(None, description="Training file inside `path`, when not the source's own name.")
    test_file: str | None = Field(None, description="Test file inside `path` (an alpaca list works too).")
    hub: str | None = Field(None, description="Hugging Face hub dataset id to load instead of files.")
    arith: ArithSettings = Field(default_factory=ArithSettings, description="Generator settings (arith only).")

    @model_validator(mode="after")
    def _split_exists(self) -> DatasetSpec:
        accepted = dataset_info(self.name).split_names()
        if not accepted and self.split != "paper":  # the default stands for a generated data set's one split
            raise ValueError(f"split: dataset '{self.name}' is generated from its settings; it has no official "
                             "split (leave `split` out)")
        if accepted and self.split not in accepted:
            raise ValueError(f"split: dataset '{self.name}' has no {self.split} split; it has {list(accepted)}")
        if self.hub is not None and self.split == "paper" and dataset_info(self.name).paper is not None:
            raise ValueError(f"hub: the hub copy of '{self.name}' is its official split; set `split: official`")
        if self.hub is not None and (not accepted or dataset_info(self.name).split_source(self.split).hub_id is None):
            raise ValueError(f"hub: dataset '{self.name}' has no hub copy; leave `hub` out and give its files")
        return self

    def folder(self) -> str:
        """Where this split's files are by default, relative to the data folder."""
        return dataset_info(self.name).split_source(self.split).folder or self.name
