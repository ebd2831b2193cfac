"""python -m analysis STUDY_DIR [STUDY_DIR ...]: draw the figures of finished studies.

Example: python -m analysis cotstudy-results/demo
"""

from __future__ import annotations

import sys

from analysis.cli import run_on_studies
from analysis.figures import plot_all
from study.core import storage


def main(argv: list[str] | None = None) -> int:
    return run_on_studies(argv, "python -m analysis", "Draw a study's figures.",
                          default_out=lambda first: storage.join(first, "figures"), produce=plot_all)


if __name__ == "__main__":
    sys.exit(main())
