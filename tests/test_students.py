"""The students' pre-flight check: an hf_id student (here a saved local folder) loads; an id that
does not load, or a LoRA target a student lacks, is one clear error, in seconds, before training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import small_spec
from test_teacher_serving import save_tiny_llama

from study.core.spec import StudySpec
from trainables.students import StudentError, build_student, check_students, student_tokenizer

FAST_S = 10.0  # transformers alone retries an unreachable hub for ~25 s


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-student"))


def _spec(tmp_path: Path, students: list[dict], **training: object) -> StudySpec:
    return StudySpec.model_validate(small_spec(tmp_path / "out", students=students,
                                               training={"max_steps": 2, **training}))


def _timed_error(spec: StudySpec, *expected: str) -> str:
    started = time.monotonic()
    with pytest.raises(StudentError) as raised:
        check_students(spec)
    assert time.monotonic() - started < FAST_S
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message, message
    for text in expected:
        assert text in message, message
    return message


def test_a_local_folder_student_passes_and_loads(tmp_path, model_folder):
    spec = _spec(tmp_path, [{"name": "folder", "hf_id": str(model_folder)}],
                 finetune="lora", lora={"targets": ["q_proj", "v_proj"]})
    started = time.monotonic()
    check_students(spec)
    assert time.monotonic() - started < FAST_S
    student = spec.students[0]
    tokenizer = student_tokenizer(student, study_tokenizer=None)
    assert len(tokenizer) == build_student(student, tokenizer, 256, seed=0).config.vocab_size


def test_an_id_that_is_no_folder_and_not_on_the_hub(tmp_path):
    _timed_error(_spec(tmp_path, [{"name": "ghost", "hf_id": "cotstudy-tests/no-such-student-7f3a"}]),
                 "student 'ghost' (hf_id 'cotstudy-tests/no-such-student-7f3a')", "not a local folder")


def test_a_path_to_a_missing_folder(tmp_path):
    missing = str(tmp_path / "students" / "mine")
    _timed_error(_spec(tmp_path, [{"name": "mine", "hf_id": missing}]), f"student 'mine' (hf_id '{missing}')")


def test_a_folder_that_holds_no_model(tmp_path):
    (tmp_path / "empty").mkdir()
    _timed_error(_spec(tmp_path, [{"name": "empty", "hf_id": str(tmp_path / "empty")}]),
                 f"student 'empty' (hf_id '{tmp_path / 'empty'}') does not load from its folder")


def test_a_lora_target_missing_in_a_hub_student(tmp_path, model_folder):
    spec = _spec(tmp_path, [{"name": "folder", "hf_id": str(model_folder)}], finetune="lora",
                 lora={"targets": ["q_proj", "c_attn"]})
    _timed_error(spec, "student 'folder': LoRA target 'c_attn' matches no layer", "'q_proj'", "'down_proj'")


def test_a_lora_target_missing_in_a_tiny_student(tmp_path):
    spec = _spec(tmp_path, [{"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                            {"name": "wide", "tiny": {"layers": 1, "width": 64, "heads": 2}}],
                 finetune="lora", lora={"targets": ["query_key_value"]})
    _timed_error(spec, "student 'small': LoRA target 'query_key_value' matches no layer")


def test_full_finetuning_does_not_check_lora_targets(tmp_path):
    check_students(_spec(tmp_path, [{"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2}}],
                         lora={"targets": ["query_key_value"]}))
