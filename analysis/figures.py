"""Figures drawn from result rows (seaborn; PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study.spec import LABEL_FORMATS  # noqa: E402  (pydantic only; no Ray)

FIGURE_FORMATS = ("png", "pdf")


def _save(figure: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in FIGURE_FORMATS:
        path = out_dir / f"{stem}.{suffix}"
        figure.savefig(path, bbox_inches="tight", dpi=150)
        written.append(path)
    plt.close(figure)
    return written


def plot_granularity_curves(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Draw the granularity curves and save them as granularity_curves.{png,pdf}."""
    return _save(draw_granularity_curves(results), out_dir, "granularity_curves")


def draw_granularity_curves(results: pd.DataFrame) -> plt.Figure:
    """Accuracy against granularity level, one line per student, a panel per
    (dataset, teacher, format). Label formats (answer-only, human) have no level: each is drawn
    as a dashed (answer-only) or dotted (human) line per student in every panel of its data set."""
    curves = _with_panels(results)
    students = sorted(results["student"].unique())
    palette = dict(zip(students, sns.color_palette("colorblind", len(students))))
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(data=curves, x="granularity", y="accuracy", hue="student", hue_order=students,
                       palette=palette, col="panel", col_order=granularity_panels(results),
                       col_wrap=min(3, curves["panel"].nunique()), kind="line",
                       marker="o", errorbar=("ci", 95), height=2.6, aspect=1.2)
    for panel, axes in grid.axes_dict.items():
        dataset = panel.split(" / ")[0]
        _draw_label_baselines(axes, results[results["dataset"] == dataset], palette)
        axes.set_xticks(range(1, 7))
        axes.set_title(panel)
    grid.set_axis_labels("granularity level", "accuracy")
    return grid.figure


def _with_panels(results: pd.DataFrame) -> pd.DataFrame:
    curves = results[~results["format"].isin(sorted(LABEL_FORMATS))].copy()
    if curves.empty:
        raise ValueError("no results with a granularity level to plot (only answer-only / human cells)")
    curves["panel"] = curves["dataset"] + " / " + curves["teacher"].astype(str) + " / " + curves["format"]
    return curves


def granularity_panels(results: pd.DataFrame) -> list[str]:
    """The panels of the granularity figure, one per (dataset, teacher, format), sorted."""
    return sorted(_with_panels(results)["panel"].unique())


def _draw_label_baselines(axes: plt.Axes, rows: pd.DataFrame, palette: dict) -> None:
    for fmt, style in (("answer_only", "--"), ("human", ":")):
        for student, accuracy in rows[rows["format"] == fmt].groupby("student")["accuracy"].mean().items():
            axes.axhline(accuracy, color=palette[student], linestyle=style, linewidth=1)
