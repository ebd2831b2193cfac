"""Results -> tables and figures. Reads only stored results; never imports Ray or trainables."""

from analysis.figures import plot_granularity_curves
from analysis.load import load

__all__ = ["load", "plot_granularity_curves"]
