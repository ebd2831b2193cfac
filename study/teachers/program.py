"""The `program` teacher kind: renders each problem's own structured solution as CoT (arith only;
the demo's teacher).

Its corpora are generated through its Ray Serve app (program_serve), asked with the same client
as any served model, the path real teachers take; with `serve: false`, and where no server runs
(`cotstudy plan`, `corpus-stats`), the same rationales are rendered in process
(study/core/program_render.py).
"""

from __future__ import annotations

import pandas as pd

from study.core.cells import CorpusKey
from study.core.datasets import DataError, Problem, load_split, problem_text, training_text
from study.core.spec import ProgramTeacher
from study.teachers.endpoint import ServeTarget, TeacherEndpoint, running
from study.teachers.kind import CorpusSource, TeacherKind
from study.core.program_render import program_corpus, render


class ProgramKind(TeacherKind[ProgramTeacher]):
    source = "served"

    def source_of(self, teacher: ProgramTeacher) -> CorpusSource:
        return "served" if teacher.serve else "rendered"

    def check(self, teacher: ProgramTeacher, keys: list[CorpusKey]) -> None:
        for key in keys:
            if not load_split(key.dataset, "train")[0].steps:
                raise DataError(f"teacher '{teacher.name}' (program) renders structured solutions, which only 'arith' "
                                f"has; use a released, vllm or openai teacher for '{key.dataset.name}'")

    def training_texts(self, key: CorpusKey) -> list[str]:
        return [training_text(key.dataset.name, problem_text(p), render(p, key.granularity, key.format))
                for p in load_split(key.dataset, "train")]

    def offline_corpus(self, key: CorpusKey, problems: list[Problem]) -> pd.DataFrame:
        return program_corpus(key, problems)

    def reach(self, teacher: ProgramTeacher, problems: list[Problem], serve: ServeTarget | None) -> TeacherEndpoint:
        from study.teachers.program_serve import deploy_program_teacher  # Ray loads only to serve

        return deploy_program_teacher(teacher, problems, running(serve))


KIND = ProgramKind()
