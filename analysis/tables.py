"""Plain-text tables of results."""

from __future__ import annotations

import pandas as pd


def level_label(granularity: float | None, fmt: str) -> str:
    """Column label: the level (L1..L6) for reasoning formats, the format name otherwise."""
    return fmt if pd.isna(granularity) else f"L{int(granularity)}"


def accuracy_table(results: pd.DataFrame) -> str:
    """Mean accuracy per student (rows) and level (columns), for each dataset/teacher/format."""
    table = results.assign(
        level=[level_label(g, f) for g, f in zip(results["granularity"], results["format"])],
        source=results["dataset"] + "/" + results["teacher"].fillna("-") + "/" + results["format"],
    )
    pivot = table.pivot_table(index="student", columns=["source", "level"], values="accuracy", aggfunc="mean")
    return pivot.T.to_string(float_format=lambda v: f"{v:.3f}")
