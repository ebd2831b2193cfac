"""Results -> tables and figures. Reads only stored results; never imports Ray or trainables."""

from analysis.load import load
from analysis.figures import plot_granularity_curves

__all__ = ["load", "plot_granularity_curves"]
