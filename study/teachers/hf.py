"""The `hf` teacher kind: a transformers causal LM that the study serves on Ray Serve (hf_serve)
while its corpora are generated; for small runs without vLLM."""

from __future__ import annotations

from study.core.cells import CorpusKey
from study.core.datasets import Problem
from study.core.spec import HfTeacher
from study.teachers.endpoint import ServeTarget, TeacherEndpoint, running
from study.teachers.kind import GeneratingKind


class HfKind(GeneratingKind[HfTeacher]):
    source = "served"

    def check(self, teacher: HfTeacher, keys: list[CorpusKey]) -> None:
        """Nothing to check offline: the model loads when it is served (a bad model id fails there)."""

    def reach(self, teacher: HfTeacher, problems: list[Problem], serve: ServeTarget | None) -> TeacherEndpoint:
        from study.teachers.hf_serve import deploy_hf_teacher  # torch and Ray load only to serve

        return deploy_hf_teacher(teacher, running(serve))


KIND = HfKind()
