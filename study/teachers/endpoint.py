"""What every served teacher shares: the OpenAI request and reply shapes its server reads and
writes, where a teacher answers (`TeacherEndpoint`), Ray Serve's HTTP proxy (`start_serve`),
deploying one teacher's Serve application, and waiting until it answers.

The servers (program_serve, hf_serve, vllm_serve) import this module; it imports none of them.
Ray is imported inside the functions that serve: `cotstudy plan` and `status` import the teacher
kinds, and through them this module, without loading Ray.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import httpx
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from study.core.cluster import on_cluster
from study.teachers.client import TeacherError

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


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


@dataclass(frozen=True)
class TeacherEndpoint:
    """Where a running teacher answers (an OpenAI-compatible base URL, up to and including /v1),
    the model name to ask for there (None: the program teacher, whose model names the style),
    and the Serve application to delete when done (None: nothing of ours to stop)."""

    base_url: str
    app_name: str | None
    model: str | None = None


@dataclass(frozen=True)
class ServeHost:
    """Where Serve's HTTP proxies listen, and the host that teacher URLs name."""

    listen: str
    url_host: str


def serve_host(host: str | None, joined_cluster: bool, node_address: str) -> ServeHost:
    """`host` (serve-teacher --host) is the address other machines reach this node by; default:
    the node's address on a cluster (joined through RAY_ADDRESS), else 127.0.0.1 (this machine
    only). Serve starts a proxy on every node with the same options and a proxy cannot bind another
    node's address, so anything but loopback listens on all interfaces; 0.0.0.0 names the node."""
    if host is None:
        host = node_address if joined_cluster else LOOPBACK
    if host in (LOOPBACK, "localhost"):
        return ServeHost(listen=LOOPBACK, url_host=host)
    return ServeHost(listen=ALL_INTERFACES, url_host=node_address if host == ALL_INTERFACES else host)


@dataclass(frozen=True)
class ServeTarget:
    """The running Serve that teachers are deployed on (its HTTP proxy's host and port), and who
    deploys them: a study (its name) or `cotstudy serve-teacher` (SHARED_OWNER). Application names and
    routes carry the owner, so a study never replaces, nor deletes, an application of another
    study or a shared teacher of the same name; a study run again replaces its own."""

    port: int
    owner: str
    url_host: str = LOOPBACK

    def app_name(self, teacher_name: str) -> str:
        return f"{self.owner}-teacher-{teacher_name}"

    def route(self, teacher_name: str) -> str:
        return f"/{self.owner}/teachers/{teacher_name}"


SHARED_OWNER = "shared"


def running(serve: ServeTarget | None) -> ServeTarget:
    """The Serve a served kind deploys on; the caller starts it first (`start_serve`)."""
    if serve is None:
        raise RuntimeError("a served teacher needs a running Serve: call start_serve first")
    return serve


def _free_port(listen: str) -> int:
    with socket.socket() as probe:
        probe.bind((listen, 0))
        return probe.getsockname()[1]


def start_serve(owner: str = SHARED_OWNER, host: str | None = None) -> ServeTarget:
    """Serve's HTTP proxy for `owner`'s teachers: a new Serve on a free port (a fixed 8000
    collides between studies), listening as `serve_host` says, or the Serve already running on
    the cluster (another study's `cotstudy serve-teacher`), which keeps the host and port it was
    started with: its URLs name 127.0.0.1 if it listens only there."""
    from ray import serve
    from ray.serve.context import _get_global_client  # the one way to read a running proxy's port
    from ray.util import get_node_ip_address

    wanted = serve_host(host, on_cluster(), get_node_ip_address())
    running_serve = _get_global_client(raise_if_no_controller_running=False)
    if running_serve is not None:
        listen = running_serve.http_config.host
        url_host = wanted.url_host if listen in (ALL_INTERFACES, wanted.url_host) else listen
        return ServeTarget(running_serve.http_config.port, owner, url_host)
    port = _free_port(wanted.listen)
    serve.start(http_options={"host": wanted.listen, "port": port})
    return ServeTarget(port, owner, wanted.url_host)


def deploy_app(app: object, teacher_name: str, target: ServeTarget, model: str | None,
               ready_timeout_s: float) -> TeacherEndpoint:
    """Run a teacher's Serve application (`<owner>-teacher-<name>`, route /<owner>/teachers/<name>)
    on the running Serve (see `start_serve`) and, when it answers to a `model` name, wait until it lists it. An
    application that fails to start or to answer is deleted again; the caller deletes the one
    returned when done (`stop_teacher`)."""
    from ray import serve

    app_name, route = target.app_name(teacher_name), target.route(teacher_name)
    endpoint = TeacherEndpoint(base_url=f"http://{target.url_host}:{target.port}{route}/v1", app_name=app_name,
                               model=model)
    try:
        serve.run(app, name=app_name, route_prefix=route)
        if model is not None:
            wait_until_answering(endpoint, ready_timeout_s)
    except BaseException:
        stop_teacher(endpoint)
        raise
    return endpoint


def stop_teacher(endpoint: TeacherEndpoint) -> None:
    """Delete one served teacher's application (its corpora are done); nothing for an API teacher.
    Only this: never `serve.shutdown()`, which would stop every application on the cluster,
    another study's `cotstudy serve-teacher` among them."""
    if endpoint.app_name is None:
        return
    from ray import serve

    serve.delete(endpoint.app_name)


def wait_until_answering(endpoint: TeacherEndpoint, timeout_s: float) -> None:
    """Poll `GET /v1/models` until it lists the endpoint's model (the HTTP proxy can lag the app)."""
    deadline = time.monotonic() + timeout_s
    problem = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{endpoint.base_url}/models", timeout=10)
            if response.status_code == 200 and endpoint.model in {m["id"] for m in response.json()["data"]}:
                return
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.TransportError as error:
            problem = f"{type(error).__name__}: {error}"
        time.sleep(0.5)
    raise TeacherError(f"teacher at {endpoint.base_url} did not answer within {timeout_s:.0f} s ({problem})")
