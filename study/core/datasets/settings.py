"""The base of every settings object in a study spec: frozen, and unknown keys are an error.

It lives here, at the bottom of the core, because a data set's own settings (`DatasetSpec`,
`ArithSettings`) are spec objects too and this package imports nothing from `study.core.spec`;
`study.core.spec` re-exports it for every other spec object.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """Every float of every spec object and result is finite: `.inf` or `.nan` is refused where it
    is read (`allow_inf_nan`), never trained on or written as a `null` no reader accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def no_repeats(values: list[Any]) -> list[Any]:
    """A list whose entries are distinct: a repeated seed, level or file would be the same cell or
    corpus twice (one cell id, one folder, two trials writing it)."""
    repeated = [value for index, value in enumerate(values) if value in values[:index]]
    if repeated:
        raise ValueError(f"an entry is given twice: {repeated[0]!r}")
    return values


# A seed numpy, torch and Python's random all accept (numpy's limit is 2**32 - 1).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
