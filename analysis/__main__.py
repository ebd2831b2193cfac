"""python -m analysis STUDY_DIR [STUDY_DIR ...]: draw the figures of finished studies.

Example: python -m analysis cotstudy-results/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.figures import plot_all
from analysis.load import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description="Draw a study's figures.")
    parser.add_argument("study_dirs", nargs="+", help="study folders holding results.parquet")
    parser.add_argument("--out", help="figure folder (default: <first study>/figures)")
    args = parser.parse_args(argv)
    try:
        results = load(*args.study_dirs)
        out_dir = Path(args.out) if args.out else Path(args.study_dirs[0]) / "figures"
        written = plot_all(results, out_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
