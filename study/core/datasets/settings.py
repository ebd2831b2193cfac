"""The base of every settings object in a study spec: frozen, and unknown keys are an error.

It lives here, at the bottom of the core, because a data set's own settings (`DatasetSpec`,
`ArithSettings`) are spec objects too and this package imports nothing from `study.core.spec`;
`study.core.spec` re-exports it for every other spec object.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
