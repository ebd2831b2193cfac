"""Teachers served on Ray Serve behind an OpenAI-compatible route.

(No `from __future__ import annotations` here: FastAPI must see the request model types.)

The program teacher is a Serve deployment with `POST /v1/chat/completions` and `GET /v1/models`.
It looks the question (the user message) up among its data sets' problems and renders that
problem's own solution in the style named by the model id (`NAME/L<level>/<format>`). The corpus
builder talks to it with the same `ChatClient` that vLLM and API teachers get.
"""


import socket
import time
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve

from study.core.datasets import Problem, load_split, problem_text
from study.core.spec import DatasetSpec, HfTeacher, ProgramTeacher, TeacherSpec, VllmTeacher
from study.teachers.program import parse_program_model_id, program_model_id, render

SERVE_HOST = "127.0.0.1"


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatCompletionRequest(BaseModel):
    """The OpenAI request fields our servers read; a field left out takes the server's default."""

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


program_api = FastAPI(title="cotstudy program teacher")


def openai_error(status: int, message: str, code: str | None = None) -> JSONResponse:
    """An error in the OpenAI API's shape, which OpenAI clients show as it is."""
    return JSONResponse(status_code=status, content={
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})


def chat_completion(reply_id: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> JSONResponse:
    """A chat completion in the OpenAI API's shape, with its token usage."""
    return JSONResponse(content={
        "id": f"chatcmpl-{reply_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(program_api)
class ProgramTeacherServer:
    def __init__(self, teacher_name: str, datasets: list[DatasetSpec]) -> None:
        self.teacher_name = teacher_name
        self.problems: dict[str, Problem] = {
            problem_text(problem): problem
            for dataset in datasets
            for split in ("train", "test")
            for problem in load_split(dataset, split)
        }

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


@dataclass(frozen=True)
class TeacherEndpoint:
    """Where a running teacher answers (an OpenAI-compatible base URL, up to and including /v1),
    the model name to ask for there (None: the program teacher, whose model names the style),
    and the Serve application to delete when done (None: nothing of ours to stop)."""

    base_url: str
    app_name: str | None
    model: str | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((SERVE_HOST, 0))
        return probe.getsockname()[1]


def start_serve() -> int:
    """Start Serve's HTTP proxy on a free local port (a fixed 8000 collides between studies)."""
    port = _free_port()
    serve.start(http_options={"host": SERVE_HOST, "port": port})
    return port


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
    app_name = f"teacher-{teacher.name}"
    route = f"/teachers/{teacher.name}"
    serve.run(ProgramTeacherServer.bind(teacher.name, list(datasets)), name=app_name, route_prefix=route)
    return TeacherEndpoint(base_url=f"http://{SERVE_HOST}:{port}{route}/v1", app_name=app_name)


def stop_teacher(endpoint: TeacherEndpoint) -> None:
    """Shut one served teacher down (its corpora are done); nothing for an API teacher."""
    if endpoint.app_name is not None:
        serve.delete(endpoint.app_name)


def stop_teachers() -> None:
    serve.shutdown()
