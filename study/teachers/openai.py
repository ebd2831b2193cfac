"""The `openai` teacher kind: any OpenAI-compatible endpoint that already answers (an API, or a
`cotstudy serve-teacher` of another study). Its API key comes from the environment variable the
spec names, never from the spec itself, and is kept out of every message."""

from __future__ import annotations

import os

from study.core.cells import CorpusKey
from study.core.datasets import DataError, Problem
from study.core.spec import OpenAITeacher
from study.teachers.client import TeacherError
from study.teachers.endpoint import ServeTarget, TeacherEndpoint
from study.teachers.kind import GeneratingKind


class OpenAIKind(GeneratingKind[OpenAITeacher]):
    source = "endpoint"

    def check(self, teacher: OpenAITeacher, keys: list[CorpusKey]) -> None:
        """Its key variable is set (whether the endpoint answers is checked before the first row)."""
        try:
            self.api_key(teacher)
        except TeacherError as missing:
            raise DataError(str(missing)) from None

    def reach(self, teacher: OpenAITeacher, problems: list[Problem], serve: ServeTarget | None) -> TeacherEndpoint:
        return TeacherEndpoint(base_url=teacher.base_url.rstrip("/"), app_name=None, model=teacher.model)

    def api_key(self, teacher: OpenAITeacher) -> str | None:
        """The API key from the environment variable the spec names."""
        if teacher.api_key_env is None:
            return None
        key = os.environ.get(teacher.api_key_env)
        if not key:
            raise TeacherError(f"teacher '{teacher.name}': the environment variable {teacher.api_key_env} "
                               f"(its api_key_env) is not set")
        return key

    def secrets(self, teacher: OpenAITeacher) -> dict[str, str]:
        key = os.environ.get(teacher.api_key_env) if teacher.api_key_env else None
        return {teacher.api_key_env: key} if teacher.api_key_env and key else {}


KIND = OpenAIKind()
