"""Figures drawn from result rows (matplotlib with seaborn's style; PNG and PDF).

Every plotted accuracy carries its 95% bootstrap interval (analysis.stats).
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.load import accuracy_caption, with_accuracy  # noqa: E402
from analysis.stats import (  # noqa: E402
    GRID_POINT,
    accuracy_intervals,
    by_method,
    interval_note,
    reasoning_rows,
    student_gains,
)
from analysis.tables import level_label  # noqa: E402

log = logging.getLogger(__name__)

FIGURE_FORMATS = ("png", "pdf")
PANEL_SIZE_IN = (3.2, 2.6)
BASELINE_STYLES = {"answer_only": "--", "human": ":"}


def _save(figure: plt.Figure, out_dir: Path, stem: str, caption: str | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if caption is not None:  # which accuracy the figure shows, under it
        figure.text(0.01, -0.01, caption, fontsize="x-small", va="top")
    written = []
    for suffix in FIGURE_FORMATS:
        path = out_dir / f"{stem}.{suffix}"
        figure.savefig(path, bbox_inches="tight", dpi=150)
        written.append(path)
    plt.close(figure)
    return written


def _with_panels(results: pd.DataFrame) -> pd.DataFrame:
    curves = reasoning_rows(results).copy()
    if curves.empty:
        raise ValueError("no results with a granularity level to plot (only answer-only / human cells)")
    curves["panel"] = curves["dataset"] + " / " + curves["teacher"].astype(str) + " / " + curves["format"]
    if "method" in curves.columns and results["method"].nunique() > 1:
        curves["panel"] += " / " + curves["method"]
    return curves


def granularity_panels(results: pd.DataFrame) -> list[str]:
    """The panels of the granularity figure, one per (dataset, teacher, format), sorted."""
    return sorted(_with_panels(results)["panel"].unique())


def _student_palette(results: pd.DataFrame) -> dict:
    students = sorted(results["student"].unique())
    return dict(zip(students, sns.color_palette("colorblind", len(students))))


def _panel_grid(n_panels: int) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(3, n_panels)
    rows = -(-n_panels // columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False, sharey=True,
                                figsize=(PANEL_SIZE_IN[0] * columns, PANEL_SIZE_IN[1] * rows))
    for extra in axes.flat[n_panels:]:
        extra.remove()
    return figure, list(axes.flat[:n_panels])


def plot_granularity_curves(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Draw the granularity curves and save them as granularity_curves.{png,pdf}."""
    return _save(draw_granularity_curves(results), out_dir, "granularity_curves")


def draw_granularity_curves(results: pd.DataFrame) -> plt.Figure:
    """Accuracy against granularity level with 95% intervals, one line per student, a panel per
    (dataset, teacher, format), each student's best level starred. Label formats (answer-only,
    human) have no level: each is a dashed (answer-only) or dotted (human) line per student."""
    sns.set_theme(style="whitegrid", context="paper")
    curves = _with_panels(results)
    intervals = accuracy_intervals(curves, ["panel", "student", "granularity"])
    palette = _student_palette(results)
    panels = granularity_panels(results)
    figure, axes_list = _panel_grid(len(panels))
    for panel, axes in zip(panels, axes_list):
        for student, rows in intervals[intervals["panel"] == panel].groupby("student"):
            _draw_curve(axes, rows.sort_values("granularity"), student, palette[student])
        _draw_label_baselines(axes, results[results["dataset"] == panel.split(" / ")[0]], palette)
        axes.set(title=panel, xlabel="granularity level", ylabel="accuracy", xticks=range(1, 7))
    handles, labels = axes_list[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="student", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def _yerr(rows: pd.DataFrame, column: str) -> list[pd.Series]:
    return [(rows[column] - rows["low"]).clip(lower=0), (rows["high"] - rows[column]).clip(lower=0)]


def _draw_curve(axes: plt.Axes, rows: pd.DataFrame, student: str, color: tuple) -> None:
    x, y = rows["granularity"], rows["accuracy"]
    axes.errorbar(x, y, yerr=_yerr(rows, "accuracy"), color=color, marker="o", markersize=4,
                  capsize=2, linewidth=1.4, label=student)
    best = rows.loc[rows["accuracy"].idxmax()]
    axes.plot(best["granularity"], best["accuracy"], marker="*", markersize=13, color=color,
              markeredgecolor="black", linestyle="none")


def _draw_label_baselines(axes: plt.Axes, rows: pd.DataFrame, palette: dict) -> None:
    for fmt, style in BASELINE_STYLES.items():
        for student, accuracy in rows[rows["format"] == fmt].groupby("student")["accuracy"].mean().items():
            axes.axhline(accuracy, color=palette[student], linestyle=style, linewidth=1)


def draw_format_effect(results: pd.DataFrame) -> plt.Figure:
    """Accuracy of each reasoning format minus `cot`, per student (same dataset, teacher and level),
    with 95% intervals; a panel per dataset."""
    sns.set_theme(style="whitegrid", context="paper")
    curves = _with_panels(results)
    if "cot" not in set(curves["format"]) or curves["format"].nunique() < 2:
        raise ValueError("the format effect needs 'cot' and at least one other reasoning format")
    intervals = accuracy_intervals(curves, by_method(["dataset", "teacher", "granularity", "student", "format"], curves))
    keys = by_method(["dataset", "teacher", "granularity", "student"], curves)
    cot = intervals[intervals["format"] == "cot"].set_index(keys)["accuracy"]
    effect = intervals[intervals["format"] != "cot"].join(cot.rename("cot"), on=keys).dropna(subset=["cot"])
    if effect.empty:  # e.g. only socratic trains on bsm: no cot of the same method to compare with
        raise ValueError("no other reasoning format shares a teacher, level, student and method with 'cot'")
    effect = effect.assign(delta=effect["accuracy"] - effect["cot"], delta_low=effect["low"] - effect["cot"],
                           delta_high=effect["high"] - effect["cot"])
    palette = _student_palette(results)
    datasets = sorted(effect["dataset"].unique())
    figure, axes_list = _panel_grid(len(datasets))
    for dataset, axes in zip(datasets, axes_list):
        summary = effect[effect["dataset"] == dataset].groupby(["format", "student"], as_index=False)[
            ["delta", "delta_low", "delta_high"]].mean()
        formats = sorted(summary["format"].unique())
        width = 0.8 / max(1, summary["student"].nunique())
        for index, (student, rows) in enumerate(summary.groupby("student")):
            x = [formats.index(f) + (index - 0.5) * width for f in rows["format"]]
            axes.bar(x, rows["delta"], width=width, color=palette[student], label=student,
                     yerr=[rows["delta"] - rows["delta_low"], rows["delta_high"] - rows["delta"]], capsize=2)
        axes.axhline(0, color="black", linewidth=0.8)
        axes.set(title=dataset, xticks=range(len(formats)), xticklabels=formats, xlabel="format",
                 ylabel="accuracy minus cot")
    axes_list[0].legend(title="student", frameon=False)
    figure.tight_layout()
    return figure


def _require(results: pd.DataFrame, columns: tuple[str, ...], figure: str) -> None:
    missing = [c for c in columns if c not in results.columns or results[c].isna().all()]
    if missing:
        raise ValueError(f"{figure} needs result columns {missing} (older results lack them)")


def draw_teacher_effect(results: pd.DataFrame) -> plt.Figure:
    """Student x teacher heatmaps of accuracy and of gain over answer-only, and teacher strength
    (its corpus accuracy) against student gain."""
    sns.set_theme(style="white", context="paper")
    _require(results, ("teacher_accuracy",), "the teacher effect")
    gains = student_gains(results)
    if gains.empty:
        raise ValueError("the teacher effect needs answer-only baselines next to teacher cells")
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(3 * PANEL_SIZE_IN[0], PANEL_SIZE_IN[1]))
    for axes, value, title in ((left, "accuracy", "accuracy"), (middle, "gain", "gain over answer-only")):
        table = gains.pivot_table(index="student", columns="teacher", values=value, aggfunc="mean")
        sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis" if value == "accuracy" else "vlag",
                    center=None if value == "accuracy" else 0, ax=axes, cbar=False)
        axes.set(title=title, xlabel="teacher", ylabel="student")
    strength = accuracy_intervals(gains, ["student", "teacher", "teacher_accuracy", "answer_only_accuracy"])
    for column in ("accuracy", "low", "high"):  # the interval of the gain: baseline is a constant here
        strength[column] -= strength["answer_only_accuracy"]
    palette = _student_palette(results)
    for student, rows in strength.groupby("student"):
        right.errorbar(rows["teacher_accuracy"], rows["accuracy"], yerr=_yerr(rows, "accuracy"),
                       color=palette[student], marker="o", linestyle="none", capsize=2, label=student)
    right.legend(title="student", frameon=False)
    right.axhline(0, color="black", linewidth=0.8)
    right.set(title="teacher strength vs student gain", xlabel="teacher accuracy", ylabel="gain over answer-only")
    figure.tight_layout()
    return figure


def draw_rationale_length(results: pd.DataFrame) -> plt.Figure:
    """Rationale length by level per teacher, and accuracy against rationale length."""
    sns.set_theme(style="whitegrid", context="paper")
    _require(results, ("mean_rationale_tokens",), "the rationale-length figure")
    curves = _with_panels(results)
    figure, (left, right) = plt.subplots(1, 2, figsize=(2 * PANEL_SIZE_IN[0], PANEL_SIZE_IN[1]))
    lengths = curves.groupby(["teacher", "format", "granularity"], as_index=False)["mean_rationale_tokens"].mean()
    sns.lineplot(data=lengths, x="granularity", y="mean_rationale_tokens", hue="teacher", style="format",
                 marker="o", ax=left)
    left.set(title="rationale length by level", xlabel="granularity level", ylabel="rationale tokens",
             xticks=range(1, 7))
    points = accuracy_intervals(curves, ["student", "mean_rationale_tokens"])
    palette = _student_palette(results)
    for student, rows in points.groupby("student"):
        right.errorbar(rows["mean_rationale_tokens"], rows["accuracy"], yerr=_yerr(rows, "accuracy"),
                       color=palette[student], marker="o", linestyle="none", capsize=2, label=student)
    right.legend(title="student", frameon=False)
    right.set(title="accuracy against length", xlabel="rationale tokens", ylabel="accuracy")
    figure.tight_layout()
    return figure


def draw_method_effect(results: pd.DataFrame) -> plt.Figure:
    """Accuracy by method (bars, 95% intervals) at each matched teacher, level and student (a group
    of bars each, labelled student / level / teacher), a panel per dataset."""
    sns.set_theme(style="whitegrid", context="paper")
    if "method" not in results.columns or results["method"].nunique() < 2:
        raise ValueError("the method effect needs results of at least two methods")
    intervals = accuracy_intervals(results, [*GRID_POINT, "method"])
    intervals["point"] = [f"{s}\n{level_label(g, f)}" + ("" if pd.isna(t) else f"\n{t}") for s, g, f, t in
                          zip(intervals["student"], intervals["granularity"], intervals["format"], intervals["teacher"])]
    methods = sorted(intervals["method"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    datasets = sorted(intervals["dataset"].unique())
    figure, axes_list = _panel_grid(len(datasets))
    width = 0.8 / len(methods)
    for dataset, axes in zip(datasets, axes_list):
        rows = intervals[intervals["dataset"] == dataset]
        points = sorted(rows["point"].unique())
        for index, method in enumerate(methods):
            bars = rows[rows["method"] == method]
            x = [points.index(p) + (index - (len(methods) - 1) / 2) * width for p in bars["point"]]
            axes.bar(x, bars["accuracy"], width=width, color=palette[method], label=method,
                     yerr=_yerr(bars, "accuracy"), capsize=2)
        axes.set(title=dataset, xticks=range(len(points)), ylabel="accuracy")
        axes.set_xticklabels(points, fontsize="x-small")
    axes_list[0].legend(title="method", frameon=False)
    figure.set_size_inches(max(PANEL_SIZE_IN[0], 0.5 * len(points) * len(methods)) * min(3, len(datasets)),
                           PANEL_SIZE_IN[1] * 1.3 * -(-len(datasets) // 3))
    figure.tight_layout()
    return figure


def draw_cost(results: pd.DataFrame) -> plt.Figure:
    """Per cell: wall seconds (training, evaluation and the rest of the trial: worker start-up,
    data, checkpoints; the rest is absent for cells finished before `wall_s` was recorded),
    GPU-seconds (only when some cell used a GPU) and train tokens."""
    sns.set_theme(style="whitegrid", context="paper")
    _require(results, ("train_s", "eval_s", "gpu_s", "train_tokens"), "the cost figure")
    cells = results.sort_values("name")
    wall = cells["wall_s"].astype("float64") if "wall_s" in cells.columns else pd.Series(float("nan"), cells.index)
    other = (wall - cells["train_s"] - cells["eval_s"]).clip(lower=0)  # NaN (not drawn) where wall is unknown
    panels = [("gpu_s", "GPU-seconds", "GPU-seconds")] if (cells["gpu_s"] > 0).any() else []
    panels.append(("train_tokens", "train tokens", "tokens"))
    height = max(PANEL_SIZE_IN[1], 0.22 * len(cells))
    figure, axes_list = plt.subplots(1, 1 + len(panels), sharey=True,
                                     figsize=((1 + len(panels)) * PANEL_SIZE_IN[0], height))
    colors = sns.color_palette("colorblind")
    seconds = axes_list[0]
    left = pd.Series(0.0, cells.index)
    for part, label, color in ((cells["train_s"], "train", colors[0]), (cells["eval_s"], "eval", colors[1]),
                               (other, "rest of the trial", colors[2])):
        seconds.barh(cells["name"], part, left=left, color=color, label=label)
        left = left + part.fillna(0)
    seconds.set(title="wall seconds per cell", xlabel="seconds")
    seconds.legend(frameon=False, fontsize="small")
    for (column, title, unit), axes, color in zip(panels, axes_list[1:], colors[3:]):
        axes.barh(cells["name"], cells[column], color=color)
        axes.set(title=title, xlabel=unit)
    figure.tight_layout()
    return figure


def draw_corpus_lengths(stats: pd.DataFrame) -> plt.Figure:
    """Corpus statistics (study.run.corpus_stats): rationale length by level, a line per teacher
    (band from median to p95), a panel per (dataset, format); label corpora as flat lines."""
    sns.set_theme(style="whitegrid", context="paper")
    levels = stats.dropna(subset=["granularity"])
    if levels.empty:
        raise ValueError("no corpus with a granularity level to plot")
    panels = sorted(set(zip(levels["dataset"], levels["format"])))
    figure, axes_list = _panel_grid(len(panels))
    teachers = sorted(levels["teacher"].dropna().unique())
    palette = dict(zip(teachers, sns.color_palette("colorblind", len(teachers))))
    for (dataset, fmt), axes in zip(panels, axes_list):
        for teacher, rows in levels[(levels["dataset"] == dataset) & (levels["format"] == fmt)].groupby("teacher"):
            rows = rows.sort_values("granularity")
            axes.plot(rows["granularity"], rows["rationale_tokens_mean"], marker="o", color=palette[teacher],
                      label=teacher)
            axes.fill_between(rows["granularity"].astype(float), rows["rationale_tokens_p50"],
                              rows["rationale_tokens_p95"], color=palette[teacher], alpha=0.15)
        for _, label in stats[(stats["dataset"] == dataset) & stats["granularity"].isna()].iterrows():
            axes.axhline(label["rationale_tokens_mean"], linestyle=BASELINE_STYLES.get(label["format"], "-."),
                         color="grey", label=label["format"])
        axes.set(title=f"{dataset} / {fmt}", xlabel="granularity level", ylabel="rationale tokens", xticks=range(1, 7))
        axes.legend(frameon=False, fontsize="small")
    figure.suptitle("rationale length: mean (line), median to p95 (band)", fontsize="small")
    figure.tight_layout()
    return figure


def plot_corpus_lengths(stats: pd.DataFrame, out_dir: Path) -> list[Path]:
    return _save(draw_corpus_lengths(stats), out_dir, "corpus_lengths")


FIGURES = {
    "granularity_curves": draw_granularity_curves,
    "format_effect": draw_format_effect,
    "teacher_effect": draw_teacher_effect,
    "rationale_length": draw_rationale_length,
    "method_effect": draw_method_effect,
    "cost": draw_cost,
}


def plot_all(results: pd.DataFrame, out_dir: Path, accuracy: str = "accuracy") -> list[Path]:
    """Every figure the results can support, showing `accuracy` (or accuracy_paper), named under
    each figure; a figure without its data is skipped, with a note."""
    shown, caption = with_accuracy(results, accuracy), accuracy_caption(results, accuracy)
    written: list[Path] = []
    for stem, draw in FIGURES.items():
        try:
            written += _save(draw(shown), out_dir, stem, f"{caption}; {interval_note(shown)}")
        except ValueError as error:
            log.warning(f"figure {stem}: skipped: {error}")
    return written
