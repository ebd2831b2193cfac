"""The `vllm` teacher kind: a Hugging Face model that the study serves with vLLM through
`ray.serve.llm` (vllm_serve) while its corpora are generated."""

from __future__ import annotations

from study.core.cells import CorpusKey
from study.core.datasets import Problem
from study.core.spec import VllmTeacher
from study.teachers.endpoint import ServeTarget, TeacherEndpoint, running
from study.teachers.kind import GeneratingKind


class VllmKind(GeneratingKind[VllmTeacher]):
    source = "served"

    def check(self, teacher: VllmTeacher, keys: list[CorpusKey]) -> None:
        """Nothing to check offline: vLLM is imported, and the model loaded, when it is served
        (a missing vLLM is a TeacherError naming the extra to install)."""

    def reach(self, teacher: VllmTeacher, problems: list[Problem], serve: ServeTarget | None) -> TeacherEndpoint:
        from study.teachers.vllm_serve import deploy_vllm_teacher  # vLLM and Ray load only to serve

        return deploy_vllm_teacher(teacher, running(serve))


KIND = VllmKind()
