import subprocess
import sys

import matplotlib.image
import pandas as pd
import pytest

import analysis
from analysis.figures import draw_granularity_curves, plot_granularity_curves
from analysis.tables import accuracy_table


def synthetic_results() -> pd.DataFrame:
    """A small student peaking at level 3, a large one rising; answer-only baselines below both."""
    rows = []
    curves = {"small": {1: 0.2, 3: 0.5, 6: 0.3}, "large": {1: 0.3, 3: 0.5, 6: 0.7}}
    for student, curve in curves.items():
        for seed in (0, 1):
            for level, accuracy in curve.items():
                rows.append(dict(cell_id=f"{student}{level}{seed}", dataset="arith", teacher="program",
                                 granularity=level, format="cot", student=student, seed=seed,
                                 accuracy=accuracy + 0.02 * seed))
            rows.append(dict(cell_id=f"{student}a{seed}", dataset="arith", teacher=None, granularity=None,
                             format="answer_only", student=student, seed=seed, accuracy=0.1))
    return pd.DataFrame(rows)


def test_granularity_figure_has_a_panel_and_both_files(tmp_path):
    written = plot_granularity_curves(synthetic_results(), tmp_path)
    assert sorted(p.suffix for p in written) == [".pdf", ".png"]
    image = matplotlib.image.imread(tmp_path / "granularity_curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 0.01, "the figure is not blank"


def test_one_panel_per_dataset_teacher_format_with_labelled_axes():
    results = synthetic_results()
    bsm = results[results["format"] == "cot"].assign(format="bsm", cell_id=lambda d: d["cell_id"] + "b")
    figure = draw_granularity_curves(pd.concat([results, bsm]))
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["arith / program / bsm", "arith / program / cot"]
    assert {axes.get_xlabel() for axes in figure.axes} == {"granularity level"}
    assert figure.axes[0].get_ylabel() == "accuracy"
    # two student curves plus one dashed answer-only baseline per student in each panel
    assert all(len(axes.get_lines()) >= 4 for axes in figure.axes)


def test_only_answer_only_results_is_a_clear_error(tmp_path):
    results = synthetic_results()
    with pytest.raises(ValueError, match="no results with a granularity level"):
        plot_granularity_curves(results[results["format"] == "answer_only"], tmp_path)


def test_accuracy_table_has_levels_as_rows_and_students_as_columns():
    table = accuracy_table(synthetic_results())
    assert "L3" in table and "answer_only" in table and "small" in table and "large" in table
    assert "0.510" in table  # mean of the two seeds for the small student at L3


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.parquet"):
        analysis.load(tmp_path)
    completed = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path)], capture_output=True, text=True)
    assert completed.returncode == 2 and "no results yet" in completed.stderr


def test_load_combines_studies_and_rejects_malformed(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        synthetic_results().to_parquet(tmp_path / name / "results.parquet")
    combined = analysis.load(tmp_path / "a", tmp_path / "b")
    assert len(combined) == 2 * len(synthetic_results()) and set(combined["study"]) == {"a", "b"}
    synthetic_results().drop(columns=["accuracy"]).to_parquet(tmp_path / "a" / "results.parquet")
    with pytest.raises(ValueError, match="missing columns.*accuracy"):
        analysis.load(tmp_path / "a")


def test_analysis_does_not_import_ray():
    code = "import sys, analysis, analysis.figures, analysis.tables; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
