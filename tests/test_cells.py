import subprocess
import sys

import pytest
from conftest import small_spec

from study.core.cells import corpus_keys, expand_grid
from study.core.spec import SftMethod, SpecError, parse_spec


def test_grid_skips_meaningless_combinations(tmp_path):
    spec = parse_spec(small_spec(tmp_path, granularities=[1, 3, 6], formats=["cot", "bsm", "answer_only", "human"],
                                 students=[{"name": "a", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                                           {"name": "b", "tiny": {"layers": 2, "width": 32, "heads": 2}}],
                                 training={"seeds": [0, 1]}))
    cells = expand_grid(spec)
    # 2 reasoning formats x 3 levels + 2 label formats = 8 corpora; x 2 students x 2 seeds
    assert len(corpus_keys(spec)) == 8
    assert len(cells) == 8 * 2 * 2
    for cell in cells:
        if cell.corpus.format in ("answer_only", "human"):
            assert cell.corpus.granularity is None and cell.corpus.teacher is None
        else:
            assert cell.corpus.granularity in (1, 3, 6) and cell.corpus.teacher.name == "program"
    assert len({c.cell_id for c in cells}) == len(cells)


def test_corpora_are_shared_by_students(tmp_path):
    spec = parse_spec(small_spec(tmp_path, students=[{"name": "a", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                                                     {"name": "b", "tiny": {"layers": 2, "width": 32, "heads": 2}}]))
    cells = expand_grid(spec)
    assert len({c.corpus.corpus_id for c in cells}) == len(corpus_keys(spec)) == 2


def test_cell_ids_are_stable_across_processes(tmp_path):
    spec_dict = small_spec(tmp_path)
    here = [c.cell_id for c in expand_grid(parse_spec(spec_dict))]
    code = ("import sys, json; from study.core.spec import parse_spec; from study.core.cells import expand_grid; "
            "print(json.dumps([c.cell_id for c in expand_grid(parse_spec(json.loads(sys.argv[1])))]))")
    import json

    there = subprocess.run([sys.executable, "-c", code, json.dumps(spec_dict)], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert json.loads(there) == here


def test_a_setting_that_shapes_the_result_changes_the_id(tmp_path):
    base = {c.name: c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path)))}
    faster = {c.name: c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path, training={"lr_peak": 0.01})))}
    moved = {c.name: c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path / "elsewhere")))}
    assert base.keys() == faster.keys()
    assert all(base[name] != faster[name] for name in base)
    assert moved == base, "where results are stored is not part of a cell"


def test_cell_names_are_readable(tmp_path):
    names = [c.name for c in expand_grid(parse_spec(small_spec(tmp_path)))]
    assert names == ["arith.program.L3.cot.s.sft.s0", "arith.answer_only.s.sft.s0"]


def test_the_study_tokenizer_is_part_of_a_tiny_students_cell(tmp_path):
    students = [{"name": "tiny", "tiny": {"layers": 1, "width": 32, "heads": 2}}, {"name": "hf", "hf_id": "org/model"}]
    ids = [{c.student.name: c.cell_id for c in expand_grid(parse_spec(small_spec(
        tmp_path, students=students, formats=["answer_only"], tokenizer={"vocab_size": vocab})))} for vocab in (512, 1024)]
    assert ids[0]["tiny"] != ids[1]["tiny"], "a new study tokenizer makes new tiny-student cells"
    assert ids[0]["hf"] == ids[1]["hf"], "a hub student reads with its own tokenizer"


def test_a_study_refuses_a_spec_with_another_tokenizer(tmp_path):
    import pytest

    from study.run.studies import StudyError, prepare_storage

    prepare_storage(parse_spec(small_spec(tmp_path, tokenizer={"vocab_size": 512})))
    with pytest.raises(StudyError, match="already exists with different cells"):
        prepare_storage(parse_spec(small_spec(tmp_path, tokenizer={"vocab_size": 1024})))


def test_the_method_and_its_settings_are_part_of_the_cell(tmp_path):
    cell = expand_grid(parse_spec(small_spec(tmp_path, method={"kind": "sft"})))[0]
    assert cell.method == SftMethod() and cell.identity()["method"] == {"kind": "sft"}
    other = cell.model_copy(update={"method": SftMethod.model_construct(kind="kd")})  # stands for another method
    assert other.cell_id != cell.cell_id and other.name == "arith.program.L3.cot.s.kd.s0"


def test_settings_added_later_keep_earlier_cell_ids_at_their_old_value(tmp_path):
    """A plain-template, robust-profile cell without a kd teacher cell hashes what it hashed before
    those settings existed."""
    from study.core.cells import content_hash

    for cell in expand_grid(parse_spec(small_spec(tmp_path))):
        before = cell.model_dump(mode="json", exclude={"corpus": cell.corpus.operational_fields(),
                                                       "student": {"template"}, "evaluation": {"profile"},
                                                       "method": {"students"}, "teacher_cell": True, "export": True})
        assert cell.cell_id == content_hash(before)


def test_a_methods_students_choose_its_cells_and_change_no_cell_id(tmp_path):
    students = [{"name": "big", "tiny": {"layers": 1, "width": 48, "heads": 2}},
                {"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2}}]
    kd = {"kind": "kd", "teacher_model": "cell:{corpus}.big.sft.s{seed}", "students": ["s"]}
    cells = expand_grid(parse_spec(small_spec(tmp_path, students=students, methods=["sft", kd],
                                              training={"max_steps": 6, "seeds": [0, 1]})))
    kd_cells = [c for c in cells if c.method.kind == "kd"]
    assert {c.student.name for c in kd_cells} == {"s"} and len(kd_cells) == 4  # 2 corpora x 2 seeds
    for cell in kd_cells:  # each learns from the big student of its own corpus and seed
        assert cell.teacher_cell.name == f"{cell.corpus.name}.big.sft.s{cell.seed}"
    unrestricted = kd_cells[0].model_copy(update={"method": kd_cells[0].method.model_copy(update={"students": None})})
    assert unrestricted.cell_id == kd_cells[0].cell_id


def test_a_methods_unknown_student_or_placeholder_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"methods.sft.students: \['nobody'\] are not among the study's students"):
        parse_spec(small_spec(tmp_path, methods=[{"kind": "sft", "students": ["nobody"]}]))
    with pytest.raises(SpecError, match=r"\{level\} is no placeholder"):
        parse_spec(small_spec(tmp_path, methods=["sft", {"kind": "kd", "teacher_model": "cell:{level}.s.sft.s0"}]))
