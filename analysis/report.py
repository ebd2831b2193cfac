"""A study report: figures, tables and findings as report.md and a self-contained report.html.

    cotstudy report STUDY_DIR [STUDY_DIR ...] [--out DIR]     (python -m analysis.report ...)
"""

from __future__ import annotations

import base64
import html
import sys
from pathlib import Path

import pandas as pd

from analysis.cli import run_on_studies
from analysis.figures import plot_all
from analysis.findings import Finding, findings
from analysis.load import accuracy_caption, with_accuracy
from analysis.stats import interval_note
from analysis.tables import paper_tables, to_latex, to_markdown


def write_report(results: pd.DataFrame, out_dir: Path, accuracy: str = "accuracy") -> list[Path]:
    """Write figures/, report.md, report.html and tables.tex under out_dir, every number the
    `accuracy` (or accuracy_paper) column, which the report names; returns the files."""
    figures = plot_all(results, out_dir / "figures", accuracy)
    caption = accuracy_caption(results, accuracy)
    results = with_accuracy(results, accuracy)
    tables = paper_tables(results)
    sentences = [_marked(f) for f in findings(results)]
    markdown = _markdown(results, figures, tables, sentences, out_dir, caption)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "report.html").write_text(_html(results, figures, tables, sentences, caption))
    (out_dir / "tables.tex").write_text("\n".join(f"% {name}\n{to_latex(t)}" for name, t in tables.items()))
    return [out_dir / "report.md", out_dir / "report.html", out_dir / "tables.tex", *figures]


ONE_SEED_MARK = "[one seed]"


def _marked(finding: Finding) -> str:
    """A finding's statement, marked when it rests on one seed (not a finding until repeated)."""
    return f"{ONE_SEED_MARK} {finding.statement}" if finding.one_seed else finding.statement


def _summary(results: pd.DataFrame, caption: str) -> str:
    return (f"{len(results)} finished cells; {results['student'].nunique()} students, "
            f"{results['dataset'].nunique()} data sets, seeds {sorted(int(s) for s in results['seed'].unique())}. "
            f"Accuracy shown: {caption}. {interval_note(results)}; a finding marked {ONE_SEED_MARK} rests on one seed.")


def _markdown(results: pd.DataFrame, figures: list[Path], tables: dict[str, pd.DataFrame],
              sentences: list[str], out_dir: Path, caption: str) -> str:
    parts = ["# Study report", "", _summary(results, caption), "", "## Findings", ""]
    parts += [f"- {s}" for s in sentences] or ["- (no finding: too few levels or formats)"]
    parts += ["", "## Figures", ""]
    parts += [f"![{p.stem}]({p.relative_to(out_dir)})" for p in figures if p.suffix == ".png"]
    for name, table in tables.items():
        parts += ["", f"## Accuracy: {name}", "", to_markdown(table)]
    return "\n".join(parts) + "\n"


def _html(results: pd.DataFrame, figures: list[Path], tables: dict[str, pd.DataFrame], sentences: list[str],
          caption: str) -> str:
    images = [f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
              for p in figures if p.suffix == ".png"]
    body = [f"<h1>Study report</h1><p>{html.escape(_summary(results, caption))}</p><h2>Findings</h2><ul>",
            *[f"<li>{html.escape(s)}</li>" for s in sentences], "</ul><h2>Figures</h2>", *images]
    body += [f"<h2>Accuracy: {html.escape(n)}</h2>{t.to_html(float_format=lambda v: f'{v:.3f}')}"
             for n, t in tables.items()]
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Study report</title></head><body>{''.join(body)}</body></html>\n"


def main(argv: list[str] | None = None) -> int:
    return run_on_studies(argv, "cotstudy report", "Write a study's report.", default_out=str, produce=write_report)


if __name__ == "__main__":
    sys.exit(main())
