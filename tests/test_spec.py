import subprocess
import sys

import pytest
from conftest import REPO, small_spec, write_spec

from study.core.cells import expand_grid
from study.core.spec import SftMethod, SpecError, StudySpec, load_spec, parse_spec, parse_spec_text, spec_to_yaml


def test_small_spec_loads_with_schema_defaults(tmp_path):
    spec = parse_spec(small_spec(tmp_path))
    assert isinstance(spec, StudySpec)
    assert spec.methods == [SftMethod()] and spec.training.schedule == "cosine" and spec.training.seeds == [0]
    with pytest.raises(Exception):
        spec.name = "other"  # frozen


def test_a_method_is_a_kind_with_its_settings_and_a_bare_kind_is_short_for_it(tmp_path):
    short = parse_spec(small_spec(tmp_path, method="sft"))
    full = parse_spec(small_spec(tmp_path, method={"kind": "sft"}))
    axis = parse_spec(small_spec(tmp_path, methods=["sft"]))
    assert short.methods == full.methods == axis.methods == [SftMethod()]
    assert [c.cell_id for c in expand_grid(short)] == [c.cell_id for c in expand_grid(full)] == \
        [c.cell_id for c in expand_grid(axis)]
    assert parse_spec_text(spec_to_yaml(short), "frozen") == short  # the frozen copy reads back


def test_the_single_method_form_keeps_the_cell_ids_of_earlier_studies(tmp_path):
    """`method: sft` studies from before `methods:` existed: their ids, pinned (specs/demo.yaml)."""
    ids = [c.cell_id for c in expand_grid(load_spec(REPO / "specs" / "demo.yaml"))]
    assert ids[:2] == DEMO_IDS_BEFORE_METHODS and len(ids) == 12


DEMO_IDS_BEFORE_METHODS = ["66f14d959c27", "e97d7e3a087c"]  # computed before `methods:` existed


def test_methods_are_a_grid_axis_of_admitted_combinations_and_name_their_kind(tmp_path):
    kd = {"kind": "kd", "teacher_model": "cell:arith.program.L3.cot.s.sft.s0", "alpha": 0.3, "top_k": 8}
    spec = parse_spec(small_spec(tmp_path, methods=["sft", kd]))
    cells = expand_grid(spec)
    assert [c.name for c in cells] == ["arith.program.L3.cot.s.sft.s0", "arith.program.L3.cot.s.kd.s0",
                                       "arith.answer_only.s.sft.s0", "arith.answer_only.s.kd.s0"]
    teacher = cells[0]
    assert all(c.teacher_cell == teacher for c in cells if c.method.kind == "kd")
    assert len({c.cell_id for c in cells}) == 4
    retrained = parse_spec(small_spec(tmp_path, methods=["sft", kd], training={"max_steps": 7}))
    assert expand_grid(retrained)[1].identity()["teacher_cell"] == expand_grid(retrained)[0].cell_id
    assert parse_spec_text(spec_to_yaml(spec), "frozen") == spec


def test_a_method_that_does_not_admit_a_corpus_makes_no_cell_for_it(tmp_path, monkeypatch):
    from study.core.spec import KdMethod

    monkeypatch.setattr(KdMethod, "admits", lambda self, fmt, teacher: fmt != "answer_only")
    spec = parse_spec(small_spec(tmp_path, methods=["sft", {"kind": "kd", "teacher_model": "org/teacher"}]))
    assert [c.name for c in expand_grid(spec)] == ["arith.program.L3.cot.s.sft.s0", "arith.program.L3.cot.s.kd.s0",
                                                   "arith.answer_only.s.sft.s0"]


@pytest.mark.parametrize("overrides, expected", [
    ({"method": "sft", "methods": ["sft"]}, "give 'method' (one) or 'methods' (a grid axis), not both"),
    ({"methods": ["sft", {"kind": "sft"}]}, "methods (kinds): names must be unique, repeated: ['sft']"),
    ({"method": {"kind": "kd", "teacher_model": "t", "mode": "offline", "top_k": None}}, "give top_k (or mode: online)"),
    ({"method": {"kind": "kd", "teacher_model": "t", "alpha": 1.5}}, "method.alpha: Input should be less than or equal to 1"),
])
def test_bad_method_settings_name_the_field(tmp_path, overrides, expected):
    assert expected in _error_for(tmp_path, **overrides)


@pytest.mark.parametrize("path", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    assert load_spec(path).name


def test_storage_flag_overrides_the_file(tmp_path):
    path = write_spec(tmp_path / "s.yaml", small_spec(tmp_path / "a"))
    assert load_spec(path, storage="s3://bucket/prefix").storage == "s3://bucket/prefix"


def _error_for(tmp_path, **overrides) -> str:
    with pytest.raises(SpecError) as raised:
        parse_spec(small_spec(tmp_path, **overrides))
    return str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"datasets": [{"name": "nope"}]}, "datasets[0].name", "'arith'"),
        ({"teachers": [{"kind": "oracle", "name": "t"}]}, "teachers[0]", "kind"),
        ({"teachers": [{"kind": "openai", "name": "t", "model": "m"}]}, "teachers[0].base_url", "Field required"),
        ({"teachers": [{"kind": "hf", "name": "t", "model": "m", "generation": {"samples_per_question": 4}}]},
         "teachers[0].generation", "need temperature > 0"),
        ({"students": [{"name": "s", "tiny": {"layers": 1, "width": 30, "heads": 4}}]}, "students[0].tiny", "divisible"),
        ({"students": [{"name": "s"}]}, "students[0]", "exactly one of 'hf_id' or 'tiny'"),
        ({"students": [{"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2, "depth": 3}}]},
         "students[0].tiny.depth", "Extra inputs"),
        ({"formats": ["cot", "poetry"]}, "formats[1]", "'cot'"),
        ({"granularities": [3, 7]}, "granularities", "outside 1-6"),
        ({"granularities": []}, "<top level>", "need at least one entry in 'granularities'"),
        ({"training": {"lr_peak": -1}}, "training.lr_peak", "greater than 0"),
        ({"evaluation": {"max_new_tokens": "many"}}, "evaluation.max_new_tokens", "integer"),
        ({"resources": {"workers_per_trial": 0}}, "resources.workers_per_trial", "greater than or equal to 1"),
        ({"students": [{"name": "s", "hf_id": "a"}, {"name": "s", "hf_id": "b"}]}, "<top level>", "repeated"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        ({"method": "dpo"}, "method", "expected tags: 'sft'"),
        ({"method": {"kind": "sft", "lr": 1}}, "method.lr", "Extra inputs"),
    ],
)
def test_bad_spec_names_the_field(tmp_path, overrides, field, expected):
    message = _error_for(tmp_path, **overrides)
    assert f": {field}: " in message or message.split(": ", 1)[1].startswith(field), message
    assert expected in message


def test_missing_required_field_is_named(tmp_path):
    raw = small_spec(tmp_path)
    del raw["students"]
    with pytest.raises(SpecError, match=r"students: Field required"):
        parse_spec(raw)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "absent.yaml")


def _cotstudy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=120)


def test_cli_invalid_spec_exits_2_with_one_error_line(tmp_path):
    path = write_spec(tmp_path / "s.yaml", small_spec(tmp_path / "out", granularities=[0]))
    for command in ("plan", "run"):
        completed = _cotstudy(command, str(path))
        assert completed.returncode == 2
        assert completed.stderr.strip().count("\n") == 0
        assert "granularities" in completed.stderr and "outside 1-6" in completed.stderr
    assert not (tmp_path / "out").exists(), "nothing may be written for an invalid spec"


def test_cli_unwritable_storage_exits_2_before_ray(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = write_spec(tmp_path / "s.yaml", small_spec(blocker / "inside"))
    completed = _cotstudy("run", str(path))
    assert completed.returncode == 2
    assert "storage" in completed.stderr and "not writable" in completed.stderr
    assert "ray" not in completed.stdout.lower()


def test_cli_plan_prints_cells_corpora_and_tokens(tmp_path):
    path = write_spec(tmp_path / "s.yaml", small_spec(tmp_path / "out"))
    completed = _cotstudy("plan", str(path))
    assert completed.returncode == 0, completed.stderr
    assert "2 cells, 2 corpora" in completed.stdout
    assert "arith.program.L3.cot.s.sft.s0" in completed.stdout
    assert "arith.answer_only.s.sft.s0" in completed.stdout
    assert "estimated train tokens" in completed.stdout
    assert not (tmp_path / "out").exists(), "plan runs nothing and writes nothing"


def test_cli_status_of_a_folder_that_is_no_study(tmp_path):
    completed = _cotstudy("status", str(tmp_path))
    assert completed.returncode == 2
    assert "not a study folder" in completed.stderr
