"""The shared shape of the analysis commands: study folders in, files out, exit 2 on bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.load import ACCURACIES, load


def run_on_studies(argv: list[str] | None, prog: str, description: str, default_out: Callable[[str], Path],
                   produce: Callable[[pd.DataFrame, Path, str], list[Path]]) -> int:
    """Parse `STUDY_DIR... [--out DIR] [--accuracy COLUMN]`, load the results, produce files, print their paths."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("study_dirs", nargs="+", help="study folders holding results.parquet")
    parser.add_argument("--out", help="output folder (default: under the first study folder)")
    parser.add_argument("--accuracy", choices=sorted(ACCURACIES), default="accuracy",
                        help="the accuracy shown: the project's scorer (accuracy) or the paper's answer rules")
    args = parser.parse_args(argv)
    try:
        written = produce(load(*args.study_dirs), Path(args.out) if args.out else default_out(args.study_dirs[0]),
                          args.accuracy)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
