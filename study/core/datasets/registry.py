"""Which data sets exist, and how a study spec names one (`DatasetSpec`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from study.core.datasets.arith import ArithSettings
from study.core.datasets.settings import Frozen

DatasetName = Literal["arith", "svamp", "gsm8k", "aqua", "math", "csqa", "obqa", "strategyqa"]


class DatasetSpec(Frozen):
    """A registered data set and where its files are.

    The files are found at `path` when given, else at `<data_dir>/<name>`; relative paths are
    relative to `data_dir`. `hub` loads the Hugging Face hub copy instead (needs the hub).
    Locations are not part of any cell or corpus id: moving the data keeps every result.
    """

    name: DatasetName = Field(description="Registered data set.")
    path: str | None = Field(None, description="Folder (or file) holding the source files; default <data_dir>/<name>.")
    train_file: str | None = Field(None, description="Training file inside `path`, when not the source's own name.")
    test_file: str | None = Field(None, description="Test file inside `path` (an alpaca list works too).")
    hub: str | None = Field(None, description="Hugging Face hub dataset id to load instead of files.")
    arith: ArithSettings = Field(default_factory=ArithSettings, description="Generator settings (arith only).")
