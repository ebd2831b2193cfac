"""Loading result rows from one or more study folders (local paths or pyarrow URIs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.core import storage  # pyarrow filesystems only; no Ray
from study.core.results import column_dtypes  # the result schema (pydantic); no Ray

# What every analysis reads: a row's identity and its score. Names and types are the result
# schema's (study.core.results.CellResult); the other columns are typed when present.
REQUIRED_COLUMNS = ("cell_id", "dataset", "teacher", "granularity", "format", "student", "seed", "accuracy", "n_test")


def load(*study_dirs: str | Path) -> pd.DataFrame:
    """results.parquet of each study folder, concatenated, typed, with a `study` column."""
    if not study_dirs:
        raise ValueError("give at least one study folder")
    return pd.concat([_load_one(str(d)) for d in study_dirs], ignore_index=True)


def _load_one(study_dir: str) -> pd.DataFrame:
    location = storage.join(study_dir, "results.parquet")
    if not storage.exists(location):
        raise FileNotFoundError(f"{location}: no results yet (has any cell of this study finished?)")
    try:
        frame = storage.read_parquet(location)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{location}: not a readable results file: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{location}: missing columns {missing}")
    dtypes = {name: dtype for name, dtype in column_dtypes().items() if name in frame.columns}
    return frame.astype(dtypes).assign(study=storage.base_name(study_dir))


# Which accuracy the figures, tables and findings show (every analysis reads the `accuracy` column)
ACCURACIES = {"accuracy": "the project's scorer", "accuracy_paper": "the paper's answer rules"}


def with_accuracy(results: pd.DataFrame, column: str = "accuracy") -> pd.DataFrame:
    """`results` whose `accuracy` is `column` (accuracy or accuracy_paper); a cell without that
    score (finished before accuracy_paper was recorded) is an error naming how many, never a 0."""
    if column not in ACCURACIES:
        raise ValueError(f"accuracy: one of {sorted(ACCURACIES)}, got '{column}'")
    if column == "accuracy":
        return results
    missing = int(results[column].isna().sum()) if column in results.columns else len(results)
    if missing:
        raise ValueError(f"{missing} of {len(results)} cells have no {column} (finished before it was recorded); "
                         "show `accuracy`, or run those cells again")
    return results.assign(accuracy=results[column].astype("float64"))


def accuracy_caption(results: pd.DataFrame, column: str = "accuracy") -> str:
    """What the shown accuracy is: its scorer and the evaluation profile(s) that decoded the outputs."""
    profiles = sorted(set(results["eval_profile"].dropna())) if "eval_profile" in results.columns else ["robust"]
    return f"{column}: {ACCURACIES[column]}; outputs decoded by evaluation.profile {' + '.join(profiles)}"
