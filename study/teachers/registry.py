"""Every teacher kind, found by its settings model (study.core.spec): one line per kind."""

from __future__ import annotations

from typing import Any

from study.core.spec import HfTeacher, OpenAITeacher, ProgramTeacher, ReleasedTeacher, TeacherBase, VllmTeacher
from study.teachers import hf, openai, program, released, vllm
from study.teachers.kind import TeacherKind

KINDS: dict[type[TeacherBase], TeacherKind[Any]] = {
    ProgramTeacher: program.KIND,
    ReleasedTeacher: released.KIND,
    HfTeacher: hf.KIND,
    VllmTeacher: vllm.KIND,
    OpenAITeacher: openai.KIND,
}


def kind_of(teacher: TeacherBase) -> TeacherKind[Any]:
    """The kind of a teacher of the spec (every member of `TeacherSpec` has one)."""
    return KINDS[type(teacher)]
