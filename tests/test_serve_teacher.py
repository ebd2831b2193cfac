"""The program teacher on a real Ray Serve, called over HTTP with the one chat client."""

import httpx
import pytest

from study.core.datasets import load_split
from study.core.prompts import teacher_messages
from study.core.spec import DatasetSpec, ProgramTeacher
from study.teachers.client import ChatClient, ChatRequest, TeacherError
from study.teachers.program_render import program_model_id, render
from study.teachers.endpoint import start_serve, stop_teachers
from study.teachers.program_serve import deploy_program_teacher

pytestmark = pytest.mark.ray
DATASET = DatasetSpec(name="arith", arith={"n_train": 30, "n_test": 5})


@pytest.fixture(scope="module")
def endpoint(ray_local):
    port = start_serve()
    yield deploy_program_teacher(ProgramTeacher(kind="program", name="prog"), [DATASET], port)
    stop_teachers()


def test_chat_completions_render_the_problem_at_the_asked_style(endpoint):
    problems = load_split(DATASET, "train")[:12]
    requests = [ChatRequest(model=program_model_id("prog", level, "cot"),
                            messages=teacher_messages(level, "cot", p.question))
                for p in problems for level in (1, 6)]
    replies = ChatClient(base_url=endpoint.base_url, max_concurrency=4).complete_all(requests)
    expected = [render(p, level, "cot") for p in problems for level in (1, 6)]
    assert [r.text for r in replies] == expected
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in replies)


def test_models_route_lists_every_style(endpoint):
    models = httpx.get(f"{endpoint.base_url}/models", timeout=10).json()
    ids = {m["id"] for m in models["data"]}
    assert {"prog/L1/cot", "prog/L6/symbolic", "prog/L3/bsm"} <= ids


def test_unknown_question_is_a_clear_teacher_error_without_retries(endpoint):
    client = ChatClient(base_url=endpoint.base_url, max_retries=3, backoff_s=5.0)
    request = ChatRequest(model="prog/L3/cot", messages=[{"role": "user", "content": "What is love?"}])
    with pytest.raises(TeacherError, match="HTTP 400.*only answers questions of its own data sets"):
        client.complete_all([request])  # a 400 is final: no 5 s backoff waits
