"""The command line's habits: key.path=value overrides, --version, the JSON schema, -v / -q
logging, plain progress lines off a terminal, and the teacher example specs passing `plan`."""

from __future__ import annotations

import json
import logging
from importlib import metadata

import pytest
from conftest import REPO, small_spec, write_spec

from study.core.cells import expand_grid
from study.core.console import Progress, configure_logging
from study.core.spec import StudySpec, load_spec
from study.run.cli import main
from study.run.studies import prepare_storage, read_frozen_spec


def test_overrides_set_fields_and_the_frozen_spec_keeps_them(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out"))
    spec = load_spec(path, overrides=["training.max_steps=3", "students[0].name=x", "evaluation.test_size=null",
                                      "tracking.mlflow={experiment: e}"])
    assert (spec.training.max_steps, spec.students[0].name, spec.evaluation.test_size) == (3, "x", None)
    assert spec.tracking.mlflow.experiment == "e", "a section the file lacks is created"
    paths, _ = prepare_storage(spec)
    frozen = read_frozen_spec(paths)
    assert (frozen.training.max_steps, frozen.students[0].name) == (3, "x")


def test_plan_takes_overrides_after_the_spec(tmp_path, capsys):
    path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out"))
    assert main(["plan", str(path), "training.max_steps=3", "--storage", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    overridden = expand_grid(load_spec(path, overrides=["training.max_steps=3"]))
    assert all(cell.cell_id in out for cell in overridden)
    assert not any(cell.cell_id in out for cell in expand_grid(load_spec(path))), "max_steps is in every id"


@pytest.mark.parametrize(("override", "named"), [
    ("training.epochz=1", "override 'training.epochz=1': training.epochz: Extra inputs are not permitted"),
    ("training.epochs=abc", "override 'training.epochs=abc': training.epochs: Input should be a valid number"),
    ("students[3].name=x", "override 'students[3].name=x': no item [3] where the spec has a list of 1"),
    ("training", "override 'training': expected key.path=value"),
    ("students.name=x", "override 'students.name=x': 'name' is under a list, not a mapping"),
])
def test_a_bad_override_is_exit_2_naming_it_and_writes_nothing(tmp_path, capsys, override, named):
    storage = tmp_path / "out"
    path = write_spec(tmp_path / "spec.yaml", small_spec(storage))
    assert main(["run", str(path), override]) == 2
    assert named in capsys.readouterr().err
    assert not storage.exists()


def test_version_and_schema(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cotstudy {metadata.version('cotstudy')}"
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == StudySpec.model_json_schema() and "tracking" in schema["properties"]
    shipped = json.loads((REPO / "specs" / "cotstudy.schema.json").read_text())
    assert shipped == schema, "specs/cotstudy.schema.json is stale: cotstudy schema > specs/cotstudy.schema.json"


@pytest.mark.parametrize("path", sorted((REPO / "specs").glob("*.yaml")) + [REPO / "study" / "specs" / "demo.yaml"],
                         ids=lambda p: p.name)
def test_every_shipped_spec_names_the_schema_for_editors(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./cotstudy.schema.json"


@pytest.mark.parametrize("name", ["teachers-vllm", "teachers-openai", "teachers-hf"])
def test_teacher_examples_pass_plan(name, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used-by-plan")
    assert main(["plan", str(REPO / "specs" / f"{name}.yaml"), "--data-dir", str(shared_data)]) == 0
    assert "corpora:" in capsys.readouterr().out


def test_quiet_keeps_warnings_and_verbose_adds_debug(capsys):
    log = logging.getLogger("study.run.launch")
    try:
        for verbosity in (-1, 0, 1):
            configure_logging(verbosity)
            log.debug("a debug line")
            log.info("a progress line")
            log.warning("a warning line")
            out = capsys.readouterr().out
            assert ("a debug line" in out, "a progress line" in out, "a warning line" in out) == (
                verbosity >= 1, verbosity >= 0, True)
    finally:
        configure_logging(0)


def test_progress_off_a_terminal_is_a_line_at_each_tenth(capsys):
    rows = Progress("corpus", 50, "rows", logging.getLogger("study.teachers.client"))
    for _ in range(50):
        rows.advance(1, "2.0 rows/s")
    rows.finish("2.0 rows/s")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"  corpus: {done}/50 rows, 2.0 rows/s" for done in range(5, 51, 5)]
