"""Uncertainty for accuracies: a bootstrap over test items within a cell and over seeds.

Resampling the test items of a cell with replacement gives Binomial(n_test, accuracy) / n_test,
so the item bootstrap needs only `n_correct` and `n_test` from results.parquet. With several
seeds the bootstrap is hierarchical: resample seeds, then items within each resampled seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.core.spec import LABEL_FORMATS  # pydantic only; no Ray

N_BOOT = 2000
LEVEL = 0.95


def bootstrap_means(cells: pd.DataFrame, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """n_boot bootstrap replicates of the mean accuracy of a group of cells (one row per seed)."""
    n_test = cells["n_test"].to_numpy()
    accuracy = cells["accuracy"].to_numpy()
    seeds = rng.integers(0, len(cells), size=(n_boot, len(cells)))  # over seeds
    correct = rng.binomial(n_test[seeds], accuracy[seeds])  # over items within each seed
    return (correct / n_test[seeds]).mean(axis=1)


def accuracy_intervals(results: pd.DataFrame, by: list[str], n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Mean accuracy of each group with its 95% bootstrap interval (columns accuracy, low, high)."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, cells in results.groupby(by, dropna=False, sort=True):
        replicates = bootstrap_means(cells, rng, n_boot)
        low, high = np.quantile(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "accuracy": cells["accuracy"].mean(), "low": low, "high": high, "n_seeds": len(cells)})
    return pd.DataFrame(rows)


GRID_POINT = ["dataset", "teacher", "granularity", "format", "student"]  # a cell but for its seed and method


def by_method(keys: list[str], results: pd.DataFrame) -> list[str]:
    """Grouping keys that keep methods apart (results written by cotstudy always have `method`;
    a frame without it is one method)."""
    return [*keys, "method"] if "method" in results.columns else keys


def fewest_seeds(results: pd.DataFrame) -> int:
    """The fewest seeds behind any grid point of the results (0 for no results)."""
    return int(results.groupby(by_method(GRID_POINT, results), dropna=False).size().min()) if len(results) else 0


def interval_note(results: pd.DataFrame) -> str:
    """What the 95% intervals of these results cover, for a figure or a report to say."""
    seeds = fewest_seeds(results)
    if seeds >= 2:
        return f"95% intervals: bootstrap over seeds ({seeds}+ per point) and test items"
    return ("95% intervals: test items only (one seed per point; seed-to-seed variation, ~0.1 on the "
            "demo, is not covered)")


def reasoning_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Cells with teacher reasoning (a granularity level); label formats left out."""
    return results[~results["format"].isin(sorted(LABEL_FORMATS))]


def student_gains(results: pd.DataFrame) -> pd.DataFrame:
    """Reasoning cells with `gain`: accuracy minus the answer-only accuracy of the same dataset
    and student (mean over seeds); cells without an answer-only baseline are dropped."""
    keys = by_method(["dataset", "student"], results)
    baseline = (results[results["format"] == "answer_only"].groupby(keys)["accuracy"].mean()
                .rename("answer_only_accuracy"))
    gains = reasoning_rows(results).join(baseline, on=keys).dropna(subset=["answer_only_accuracy"])
    return gains.assign(gain=gains["accuracy"] - gains["answer_only_accuracy"])


BASELINE_METHOD = "sft"
FALLBACK_FORMAT = "cot"


def method_comparisons(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """For each method but sft, at every grid point (dataset, teacher, level, format, student) it
    shares with sft: (method, its cells, sft's cells), one triple per point. A method that trains
    on a format sft does not (socratic on bsm) is matched with sft on `cot` at the same teacher,
    level and student. Empty without a method column or without sft."""
    if "method" not in results.columns or BASELINE_METHOD not in set(results["method"]):
        return []
    baseline = results[results["method"] == BASELINE_METHOD]
    point = {_plain(key): cells for key, cells in baseline.groupby(GRID_POINT, dropna=False)}
    pairs = []
    for (method, *key), cells in results[results["method"] != BASELINE_METHOD].groupby(
            ["method", *GRID_POINT], dropna=False, sort=True):
        dataset, teacher, level, _, student = _plain(key)
        matched = point.get(_plain(key), point.get((dataset, teacher, level, FALLBACK_FORMAT, student)))
        if matched is not None:
            pairs.append((method, cells, matched))
    return pairs


def _plain(key: tuple | list) -> tuple:
    """A group key with every missing value (no teacher, no level) as None, so keys compare equal."""
    return tuple(None if pd.isna(value) else value for value in key)
