"""Loading result rows from one or more study folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("cell_id", "dataset", "teacher", "granularity", "format", "student", "seed", "accuracy", "n_test")


def load(*study_dirs: str | Path) -> pd.DataFrame:
    """results.parquet of each study folder, concatenated, with a `study` column."""
    frames = []
    for study_dir in study_dirs:
        location = Path(study_dir) / "results.parquet"
        if not location.exists():
            raise FileNotFoundError(f"{location}: no results yet (has any cell of this study finished?)")
        try:
            frame = pd.read_parquet(location)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{location}: not a readable results file: {error}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{location}: missing columns {missing}")
        frames.append(frame.assign(study=Path(study_dir).name))
    if not frames:
        raise ValueError("give at least one study folder")
    return pd.concat(frames, ignore_index=True)
