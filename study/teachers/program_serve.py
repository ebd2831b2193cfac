"""The program teacher's server: a Ray Serve deployment with `POST /v1/chat/completions` and
`GET /v1/models`.

(No `from __future__ import annotations` here: FastAPI must see the request model types.)

It looks the question (the user message) up among the problems it was given (the study's stored
splits: a replica on any node reads no data folder) and renders that
problem's own solution in the style named by the model id (`NAME/L<level>/<format>`). The corpus
builder talks to it with the same `ChatClient` that vLLM and API teachers get.
"""


from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve

from study.core.datasets import Problem, problem_text
from study.core.spec import ProgramTeacher
from study.teachers.endpoint import (
    ChatCompletionRequest,
    ServeTarget,
    TeacherEndpoint,
    chat_completion,
    deploy_app,
    openai_error,
)
from study.core.program_render import parse_program_model_id, program_model_id, render

program_api = FastAPI(title="cotstudy program teacher")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(program_api)
class ProgramTeacherServer:
    def __init__(self, teacher_name: str, problems: list[Problem]) -> None:
        self.teacher_name = teacher_name
        self.problems: dict[str, Problem] = {problem_text(problem): problem for problem in problems}

    @program_api.get("/v1/models")
    def models(self) -> dict:
        ids = [program_model_id(self.teacher_name, level, fmt)
               for level in range(1, 7) for fmt in ("cot", "answer_first", "bsm", "rar", "symbolic")]
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "cotstudy"} for i in ids]}

    @program_api.post("/v1/chat/completions")
    async def chat_completions(self, request: ChatCompletionRequest) -> JSONResponse:
        try:
            granularity, fmt = parse_program_model_id(request.model)
        except ValueError as error:
            return openai_error(404, str(error))
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        problem = self.problems.get(question)
        if problem is None:
            return openai_error(400, "the program teacher only answers questions of its own data sets")
        text = render(problem, granularity, fmt)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        return chat_completion(problem.uid, request.model, text, "stop", prompt_tokens, len(text.split()))


def deploy_program_teacher(teacher: ProgramTeacher, problems: list[Problem], target: ServeTarget) -> TeacherEndpoint:
    """Deploy the program teacher on the running Serve (see `start_serve`). Its model names the
    style asked for, so there is no one model to wait for: `serve.run` returns once it is running."""
    return deploy_app(ProgramTeacherServer.bind(teacher.name, list(problems)), teacher.name, target, None, 0.0)
