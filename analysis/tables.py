"""The paper-style tables (student x level, student x format, student x teacher), as text,
Markdown and LaTeX."""

from __future__ import annotations

import pandas as pd

from analysis.stats import GRID_POINT, accuracy_intervals
from study.core.spec import LABEL_FORMATS


def level_label(granularity: float | None, fmt: str) -> str:
    """Column label: the level (L1..L6) for reasoning formats, the format name otherwise."""
    return fmt if pd.isna(granularity) else f"L{int(granularity)}"


def _labelled(results: pd.DataFrame) -> pd.DataFrame:
    return results.assign(
        level=[level_label(g, f) for g, f in zip(results["granularity"], results["format"])],
        source=results["dataset"] + "/" + results["teacher"].fillna("-") + "/" + results["format"],
    )


def accuracy_table(results: pd.DataFrame) -> str:
    """Mean accuracy per student (columns) and dataset/teacher/format and level (rows)."""
    pivot = _labelled(results).pivot_table(index="student", columns=["source", "level"], values="accuracy",
                                           aggfunc="mean")
    return pivot.T.to_string(float_format=lambda v: f"{v:.3f}")


def paper_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Mean accuracy tables keyed by name: student x level, x format, x teacher (those with data)."""
    labelled = _labelled(results)
    reasoning = labelled[~labelled["format"].isin(sorted(LABEL_FORMATS))]
    tables = {"student x level": labelled.pivot_table(index="student", columns="level", values="accuracy")}
    if reasoning["format"].nunique() > 1:
        tables["student x format"] = reasoning.pivot_table(index="student", columns="format", values="accuracy")
    if reasoning["teacher"].nunique() > 1:
        tables["student x teacher"] = reasoning.pivot_table(index="student", columns="teacher", values="accuracy")
    if "method" in results.columns and results["method"].nunique() > 1:
        tables["method effect"] = method_table(results)
    return tables


def method_table(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy by method (columns, each with its 95% bootstrap interval) at every matched
    dataset, teacher, level and student (rows): the `method_effect` table."""
    intervals = accuracy_intervals(_labelled(results), [*GRID_POINT, "level", "method"])
    intervals["shown"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                          zip(intervals["accuracy"], intervals["low"], intervals["high"])]
    intervals["teacher"] = intervals["teacher"].fillna("-")
    table = intervals.pivot_table(index=["dataset", "teacher", "level", "format", "student"], columns="method",
                                  values="shown", aggfunc="first")
    return table.fillna("-")


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(floatfmt=".3f")


def to_latex(table: pd.DataFrame) -> str:
    return table.to_latex(float_format="%.3f")
