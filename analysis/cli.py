"""The shared shape of the analysis commands: study folders in, files out, exit 2 on bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.load import ACCURACIES, load
from study.core import storage  # pyarrow filesystems only; no Ray


def run_on_studies(argv: list[str] | None, prog: str, description: str, default_out: Callable[[str], str],
                   produce: Callable[[pd.DataFrame, Path, str], list[Path]]) -> int:
    """Parse `STUDY_DIR... [--out DIR] [--accuracy COLUMN]`, load the results, produce files, print
    where they are. `default_out(first study folder)` is a location under that folder; a URI (the
    study's own storage, or --out s3://...) gets the files uploaded there."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("study_dirs", nargs="+", help="study folders holding results.parquet")
    parser.add_argument("--out", help="output folder or URI (default: under the first study folder, in its storage)")
    parser.add_argument("--accuracy", choices=sorted(ACCURACIES), default="accuracy",
                        help="the accuracy shown: the project's scorer (accuracy) or the paper's answer rules")
    args = parser.parse_args(argv)
    try:
        out = args.out or default_out(args.study_dirs[0])
        storage.check_output_folder(out)
        results = load(*args.study_dirs)
        written = storage.produce_at(out,
                                     lambda folder: produce(results, folder, args.accuracy))
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
