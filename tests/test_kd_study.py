"""kd studies on a real local Ray: a `cell:` teacher is trained before the cells that learn from
it, in the first run and again after a resume, and its stored log-probs are computed once."""

from __future__ import annotations

import json
from pathlib import Path

import faults
import pytest
from conftest import small_spec
from ray import cloudpickle

from study.core.spec import parse_spec
from study.run.launch import resume_study, run_study

pytestmark = pytest.mark.ray
cloudpickle.register_pickle_by_value(faults)  # Ray workers cannot import the tests folder

TEACHER = "arith.answer_only.teacher.sft.s0"


def test_a_cell_teacher_runs_before_its_students_and_again_after_a_resume(tmp_path, ray_local):
    """One student (self-distillation keeps the grid at two cells): its sft cell teaches its kd cell."""
    students = [{"name": "teacher", "tiny": {"layers": 1, "width": 32, "heads": 2}}]
    spec = parse_spec(small_spec(tmp_path / "out", name="kd-order", formats=["answer_only"], students=students,
                                 methods=["sft", {"kind": "kd", "teacher_model": f"cell:{TEACHER}", "top_k": 8}]))
    first = run_study(spec, trainable=faults.fail_teacher_first_attempt)
    states = {s.cell.name: s.state for s in first.states}
    assert states == {TEACHER: "failed", "arith.answer_only.teacher.kd.s0": "pending"}
    order = Path(first.paths.root) / "order.txt"
    assert order.read_text().splitlines()[0] == TEACHER, "the teacher's grid runs first"

    second = resume_study(first.paths.root, trainable=faults.fail_teacher_first_attempt)
    assert second.count("done") == 2, [s.error for s in second.states]
    started = order.read_text().splitlines()
    resumed = started[started.index(TEACHER, 1):]  # the resume's attempts, from the teacher's second
    assert resumed == [TEACHER, "arith.answer_only.teacher.kd.s0"]
    (card,) = (Path(first.paths.root) / "teacher_logits").glob("*.json")
    card = json.loads(card.read_text())
    assert card["forward_passes"] == 1 and card["top_k"] == 8 and card["teacher"].startswith("cell:")
    kd = second.results[second.results["method"] == "kd"]
    assert len(kd) == 1 and (kd["train_steps"] == 6).all() and kd["accuracy"].between(0, 1).all()
