"""Deploying a teacher on Ray Serve by its kind (program, hf, vllm)."""

from __future__ import annotations

from ray import serve

from study.core.spec import DatasetSpec, HfTeacher, ProgramTeacher, TeacherSpec, VllmTeacher
from study.teachers.endpoint import TeacherEndpoint


def deploy_teacher(teacher: TeacherSpec, datasets: list[DatasetSpec], port: int) -> TeacherEndpoint:
    """Deploy a teacher on the running Ray cluster's Serve and wait until it answers."""
    if isinstance(teacher, HfTeacher):
        from study.teachers.hf_serve import deploy_hf_teacher

        return deploy_hf_teacher(teacher, port)
    if isinstance(teacher, VllmTeacher):
        from study.teachers.vllm_serve import deploy_vllm_teacher

        return deploy_vllm_teacher(teacher, port)
    if not isinstance(teacher, ProgramTeacher):
        raise ValueError(f"teacher kind '{teacher.kind}' is not served on Ray Serve")
    from study.teachers.program_serve import deploy_program_teacher

    return deploy_program_teacher(teacher, datasets, port)


def stop_teachers() -> None:
    serve.shutdown()
