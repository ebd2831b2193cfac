import subprocess
import sys

import matplotlib.image
import pandas as pd
import pytest

import analysis
from analysis.figures import (
    draw_cost,
    draw_format_effect,
    draw_granularity_curves,
    draw_rationale_length,
    draw_teacher_effect,
    plot_granularity_curves,
)
from analysis.findings import findings
from analysis.report import write_report
from analysis.stats import accuracy_intervals
from analysis.tables import accuracy_table

N_TEST = 400


def synthetic_results(seeds: tuple[int, ...] = (0, 1), formats: dict[str, float] | None = None) -> pd.DataFrame:
    """A small student peaking at level 3, a large one rising; answer-only baselines below both.
    `formats` adds reasoning formats whose accuracy is shifted by the given amount from cot."""
    rows = []
    curves = {"small": {1: 0.2, 3: 0.5, 6: 0.3}, "large": {1: 0.3, 3: 0.5, 6: 0.7}}
    for fmt, shift in {"cot": 0.0, **(formats or {})}.items():
        for student, curve in curves.items():
            for seed in seeds:
                for level, accuracy in curve.items():
                    rows.append(dict(cell_id=f"{fmt}{student}{level}{seed}", dataset="arith", teacher="program",
                                     granularity=level, format=fmt, student=student, seed=seed, n_test=N_TEST,
                                     accuracy=accuracy + shift + 0.02 * (seed % 2)))
    for student in curves:
        for seed in seeds:
            rows.append(dict(cell_id=f"{student}a{seed}", dataset="arith", teacher=None, granularity=None,
                             format="answer_only", student=student, seed=seed, n_test=N_TEST, accuracy=0.1))
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


def test_interior_optimum_and_monotonic_rise_are_told_apart():
    by_student = {f.student: f for f in findings(synthetic_results()) if f.kind == "granularity"}
    assert by_student["small"].holds and by_student["small"].numbers["best_level"] == 3
    assert by_student["small"].numbers["p_interior"] > 0.95
    assert not by_student["large"].holds and by_student["large"].numbers["best_level"] == 6
    assert by_student["large"].numbers["p_interior"] < 0.05
    assert "non-monotonic" in by_student["small"].statement


def test_a_planted_format_effect_is_found_and_its_absence_is_not():
    planted = {f.student: f for f in findings(synthetic_results(formats={"bsm": -0.15})) if f.kind == "format"}
    assert all(f.holds for f in planted.values())
    assert planted["small"].numbers["difference"] == pytest.approx(0.15)
    assert planted["small"].numbers["low"] > 0.05
    absent = [f for f in findings(synthetic_results(formats={"bsm": 0.0})) if f.kind == "format"]
    assert absent and not any(f.holds for f in absent)
    assert all(f.numbers["low"] < 0 < f.numbers["high"] + 1e-9 for f in absent)


def test_intervals_shrink_with_more_seeds():
    def width(seeds):
        intervals = accuracy_intervals(synthetic_results(seeds=seeds), ["student", "format", "granularity"])
        return float((intervals["high"] - intervals["low"]).mean())

    assert width(tuple(range(8))) < 0.6 * width((0,))


def test_format_effect_figure_is_relative_to_cot():
    figure = draw_format_effect(synthetic_results(formats={"bsm": -0.15, "rar": 0.05}))
    axes = figure.axes[0]
    assert axes.get_ylabel() == "accuracy minus cot" and axes.get_title() == "arith"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["bsm", "rar"]
    heights = sorted(round(p.get_height(), 3) for p in axes.patches)
    assert heights[0] == pytest.approx(-0.15, abs=1e-6) and heights[-1] == pytest.approx(0.05, abs=1e-6)


def test_report_has_findings_tables_and_embedded_figures(tmp_path):
    written = write_report(synthetic_results(formats={"bsm": -0.15}), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "best at level 3" in report and "format matters" in report
    assert "| small" in report and "figures/granularity_curves.png" in report
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # granularity and format figures, inline
    assert "\\begin{tabular}" in (tmp_path / "tables.tex").read_text()
    assert tmp_path / "figures" / "format_effect.pdf" in written


def test_cli_report_writes_the_report_and_names_a_missing_study(tmp_path):
    (tmp_path / "study").mkdir()
    synthetic_results().to_parquet(tmp_path / "study" / "results.parquet")
    from study.run.cli import main

    assert main(["report", str(tmp_path / "study")]) == 0
    assert (tmp_path / "study" / "report.html").exists() and (tmp_path / "study" / "report.md").exists()
    assert main(["report", str(tmp_path / "absent")]) == 2


def with_teachers(strengths: dict[str, float], gain_follows_strength: bool) -> pd.DataFrame:
    """Results with several teachers of known accuracy; the student gain rises or falls with it."""
    frames = []
    for rank, (teacher, strength) in enumerate(sorted(strengths.items(), key=lambda kv: kv[1])):
        shift = 0.05 * rank if gain_follows_strength else -0.05 * rank
        teacher_rows = synthetic_results().query("format == 'cot'").assign(
            teacher=teacher, teacher_accuracy=strength, accuracy=lambda d: d["accuracy"] + shift,
            cell_id=lambda d: d["cell_id"] + teacher)
        frames.append(teacher_rows)
    baseline = synthetic_results().query("format == 'answer_only'").assign(teacher_accuracy=1.0)
    frames.append(baseline)
    return pd.concat(frames, ignore_index=True).assign(
        mean_rationale_tokens=lambda d: d["granularity"].fillna(0) * 20 + 5, train_s=30.0, eval_s=2.0, gpu_s=0.0,
        train_tokens=100_000, name=lambda d: d["cell_id"])


def test_teacher_strength_correlation_is_found_both_ways():
    strengths = {"weak": 0.5, "mid": 0.7, "strong": 0.9}
    helps = [f for f in findings(with_teachers(strengths, True)) if f.kind == "teacher"]
    hurts = [f for f in findings(with_teachers(strengths, False)) if f.kind == "teacher"]
    assert {f.student for f in helps} == {"small", "large"}
    assert all(f.holds and f.numbers["spearman_rho"] == pytest.approx(1.0) for f in helps)
    assert all(not f.holds and f.numbers["spearman_rho"] == pytest.approx(-1.0) for f in hurts)


def test_teacher_length_and_cost_figures_render_with_their_axes():
    results = with_teachers({"weak": 0.5, "mid": 0.7, "strong": 0.9}, True)
    teacher = draw_teacher_effect(results)
    assert [a.get_title() for a in teacher.axes[:3]] == ["accuracy", "gain over answer-only",
                                                          "teacher strength vs student gain"]
    assert teacher.axes[0].get_xlabel() == "teacher" and teacher.axes[2].get_xlabel() == "teacher accuracy"
    length = draw_rationale_length(results)
    assert length.axes[0].get_ylabel() == "rationale tokens" and length.axes[1].get_ylabel() == "accuracy"
    cpu_only = draw_cost(results)
    assert [a.get_title() for a in cpu_only.axes] == ["wall seconds per cell", "train tokens"], "no empty GPU panel"
    on_gpus = draw_cost(results.assign(gpu_s=64.0))
    assert [a.get_title() for a in on_gpus.axes] == ["wall seconds per cell", "GPU-seconds", "train tokens"]


def test_cost_figure_draws_the_time_outside_training_from_wall_seconds():
    results = with_teachers({"weak": 0.5}, True)
    bars = lambda figure: [(round(b.get_x(), 6), round(b.get_width(), 6)) for b in figure.axes[0].patches]  # noqa: E731
    measured = bars(draw_cost(results.assign(wall_s=50.0)))
    n = len(results)
    assert measured[2 * n:] == [(32.0, 18.0)] * n, "the rest of the trial: wall 50 - train 30 - eval 2, after them"
    unknown = bars(draw_cost(results))  # cells finished before wall_s was recorded: no rest bar, not a 0
    assert unknown[:2 * n] == measured[:2 * n] and all(width != width for _, width in unknown[2 * n:])


def test_figures_for_what_exists_when_older_results_lack_columns(tmp_path, capsys):
    from analysis.figures import plot_all

    written = plot_all(synthetic_results(), tmp_path)  # no teacher_accuracy, lengths or timings
    assert {p.stem for p in written} == {"granularity_curves"}
    notes = capsys.readouterr().out
    assert "teacher_effect: skipped" in notes and "teacher_accuracy" in notes
    assert "cost: skipped" in notes


def test_load_reads_a_uri_and_types_the_columns(tmp_path):
    (tmp_path / "s").mkdir()
    synthetic_results().to_parquet(tmp_path / "s" / "results.parquet")
    loaded = analysis.load(f"file://{tmp_path / 's'}")
    assert len(loaded) == len(synthetic_results()) and set(loaded["study"]) == {"s"}
    assert str(loaded["granularity"].dtype) == "Int64" and str(loaded["accuracy"].dtype) == "float64"
    assert loaded["teacher"].isna().sum() == 4  # answer-only rows have no teacher


def test_a_corrupted_results_file_is_named(tmp_path):
    (tmp_path / "results.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="results.parquet: not a readable results file"):
        analysis.load(tmp_path)


def test_every_figure_is_a_non_blank_image(tmp_path):
    from analysis.figures import FIGURES, plot_all

    results = with_teachers({"weak": 0.5, "mid": 0.7, "strong": 0.9}, True)
    bsm = results[results["format"] == "cot"].assign(format="bsm", cell_id=lambda d: d["cell_id"] + "b",
                                                     name=lambda d: d["name"] + "b")
    kd = results[results["format"] == "cot"].assign(method="kd", cell_id=lambda d: d["cell_id"] + "k",
                                                    name=lambda d: d["name"] + "k")
    written = plot_all(pd.concat([results.assign(method="sft"), bsm.assign(method="sft"), kd], ignore_index=True),
                       tmp_path)
    assert {p.stem for p in written} == set(FIGURES)
    for stem in FIGURES:
        image = matplotlib.image.imread(tmp_path / f"{stem}.png")
        assert image.std() > 0.01, stem


def test_load_types_every_column_by_the_result_schema(tmp_path):
    from study.core.results import CellResult

    (tmp_path / "s").mkdir()
    measured = synthetic_results().assign(train_steps=12.0, mfu=None, eval_engine="transformers")
    measured.to_parquet(tmp_path / "s" / "results.parquet")
    loaded = analysis.load(tmp_path / "s")
    assert str(loaded["train_steps"].dtype) == "int64" and str(loaded["mfu"].dtype) == "float64"
    assert str(loaded["eval_engine"].dtype) == "string"
    from analysis.load import REQUIRED_COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(CellResult.model_fields)


def test_the_report_marks_every_finding_that_rests_on_one_seed(tmp_path):
    write_report(synthetic_results(seeds=(0,), formats={"bsm": -0.15}), tmp_path / "one")
    one = (tmp_path / "one" / "report.md").read_text()
    marked = [line for line in one.splitlines() if line.startswith("- [one seed] ")]
    assert len(marked) == len(findings(synthetic_results(seeds=(0,), formats={"bsm": -0.15}))) > 0
    assert "test items only" in one
    write_report(synthetic_results(seeds=(0, 1, 2), formats={"bsm": -0.15}), tmp_path / "three")
    three = (tmp_path / "three" / "report.md").read_text()
    assert "[one seed] " not in three.replace("a finding marked [one seed] rests", "")
    assert "bootstrap over seeds (3+ per point) and test items" in three


def test_every_figure_says_what_its_intervals_cover(tmp_path, monkeypatch):
    import analysis.figures as figures

    notes = []
    real_save = figures._save
    monkeypatch.setattr(figures, "_save", lambda figure, out, stem, caption=None: notes.append(
        [caption, *(t.get_text() for t in figure.texts)]) or real_save(figure, out, stem, caption))
    figures.plot_all(synthetic_results(seeds=(0,)), tmp_path)
    assert notes and all(any("test items only (one seed" in (text or "") for text in texts) for texts in notes)


def test_the_report_shows_the_chosen_accuracy_and_says_which(tmp_path):
    """accuracy_paper shown: the paper's rules put the small student's optimum at level 6 here."""
    results = synthetic_results()
    paper = results["accuracy"].where(~((results["student"] == "small") & (results["granularity"] == 6)), 0.9)
    results = results.assign(accuracy_paper=paper, eval_profile="paper")
    write_report(results, tmp_path / "robust")
    write_report(results, tmp_path / "paper", accuracy="accuracy_paper")
    robust_md, paper_md = ((tmp_path / name / "report.md").read_text() for name in ("robust", "paper"))
    assert "Accuracy shown: accuracy: the project's scorer; outputs decoded by evaluation.profile paper" in robust_md
    assert "Accuracy shown: accuracy_paper: the paper's answer rules" in paper_md
    assert "small" in robust_md and "best at level 3" in robust_md and "best at level 6" in paper_md


def test_an_accuracy_some_cells_lack_is_refused(tmp_path):
    results = synthetic_results().assign(accuracy_paper=None)
    with pytest.raises(ValueError, match=r"cells have no accuracy_paper \(finished before it was recorded\)"):
        analysis.plot_all(results, tmp_path, accuracy="accuracy_paper")


def test_cli_report_and_figures_show_the_accuracy_asked_for(tmp_path, capsys):
    from study.run.cli import main

    (tmp_path / "study").mkdir()
    synthetic_results().assign(accuracy_paper=0.25).to_parquet(tmp_path / "study" / "results.parquet")
    assert main(["report", str(tmp_path / "study"), "--accuracy", "accuracy_paper"]) == 0
    assert "Accuracy shown: accuracy_paper: the paper's answer rules; outputs decoded by evaluation.profile robust" \
        in (tmp_path / "study" / "report.md").read_text()
    assert main(["figures", str(tmp_path / "study"), "--accuracy", "accuracy_paper"]) == 0
    (tmp_path / "old").mkdir()
    synthetic_results().to_parquet(tmp_path / "old" / "results.parquet")  # written before accuracy_paper
    assert main(["figures", str(tmp_path / "old"), "--accuracy", "accuracy_paper"]) == 2
    assert "have no accuracy_paper" in capsys.readouterr().err
