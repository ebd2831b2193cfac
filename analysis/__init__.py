"""Results -> tables, figures, findings and reports. Reads only stored results; never imports
Ray or trainables, so it runs in a plain notebook:

    import analysis
    results = analysis.load("cotstudy-results/demo")
    for finding in analysis.findings(results): print(finding.statement)
"""

from analysis.figures import draw_format_effect, draw_granularity_curves, plot_all, plot_granularity_curves
from analysis.findings import Finding, findings
from analysis.load import load
from analysis.report import write_report
from analysis.stats import accuracy_intervals
from analysis.tables import paper_tables

__all__ = ["load", "findings", "Finding", "accuracy_intervals", "paper_tables", "plot_all", "write_report",
           "plot_granularity_curves", "draw_granularity_curves", "draw_format_effect"]
