"""Methods side by side (analysis): the method_effect table and figure, and the finding that says
whether a method beats sft at matched teacher, level, format and student, with its interval."""

import matplotlib.image
import pandas as pd
from test_analysis import synthetic_results

from analysis.figures import plot_all
from analysis.findings import method_findings
from analysis.report import write_report
from analysis.tables import method_table


def _with_methods(kd_shift: float, socratic_shift: float | None = None) -> pd.DataFrame:
    """sft on every grid point; kd on the same points shifted by kd_shift; socratic (if given) on
    `bsm` only, a format sft lacks (so matched with sft's cot)."""
    sft = synthetic_results().assign(method="sft")
    kd = sft.assign(method="kd", accuracy=sft["accuracy"] + kd_shift, cell_id=sft["cell_id"] + "k")
    frames = [sft, kd]
    if socratic_shift is not None:
        cot = sft[sft["format"] == "cot"]
        frames.append(cot.assign(method="socratic", format="bsm", accuracy=cot["accuracy"] + socratic_shift,
                                 cell_id=cot["cell_id"] + "s"))
    return pd.concat(frames, ignore_index=True)


def test_a_planted_kd_gain_is_found_with_its_interval_and_its_absence_is_not():
    found = {(f.student, f.statement.split(": ")[1].split(" ")[0]): f for f in method_findings(_with_methods(0.08))}
    assert set(found) == {("small", "kd"), ("large", "kd")}
    for finding in found.values():
        assert finding.holds and finding.kind == "method" and finding.n_seeds == 2
        assert abs(finding.numbers["difference"] - 0.08) < 1e-9 and finding.numbers["low"] > 0.03
        assert finding.numbers["points"] == 4  # three levels of cot and answer-only, matched one to one
        assert "kd beats sft (answer_only/cot); kd" in finding.statement and "95% interval" in finding.statement
    nothing = method_findings(_with_methods(0.0))
    assert not any(f.holds for f in nothing) and all(f.numbers["low"] < 0 < f.numbers["high"] for f in nothing)


def test_a_method_on_a_format_sft_lacks_is_compared_with_sft_on_cot():
    socratic = [f for f in method_findings(_with_methods(0.0, socratic_shift=0.1)) if "socratic" in f.statement]
    assert len(socratic) == 2 and all(f.holds and "socratic beats sft (cot)" in f.statement for f in socratic)
    assert all(f.numbers["points"] == 3 for f in socratic)


def test_the_method_table_has_each_methods_accuracy_and_interval_per_matched_point():
    table = method_table(_with_methods(0.08))
    assert list(table.columns) == ["kd", "sft"] and len(table) == 8  # 2 students x (3 levels + answer-only)
    shown = table.loc[("arith", "program", "L3", "cot", "small")]
    assert shown["sft"].startswith("0.510 [") and shown["kd"].startswith("0.590 [")


def test_the_method_effect_figure_and_the_report_show_the_methods(tmp_path):
    results = _with_methods(0.08)
    written = plot_all(results, tmp_path / "figures")
    assert tmp_path / "figures" / "method_effect.png" in written
    assert matplotlib.image.imread(tmp_path / "figures" / "method_effect.png").std() > 0.01
    write_report(results, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Accuracy: method effect" in report and "kd beats sft" in report
