"""The program teacher on a real Ray Serve, called over HTTP with the one chat client; building
a study's corpora leaves every other Serve application running."""

import httpx
import pytest
from conftest import small_spec
from ray import serve

from study.core import storage
from study.core.cells import corpus_keys
from study.core.datasets import load_split
from study.core.prompts import teacher_messages
from study.core.spec import DatasetSpec, ProgramTeacher, parse_spec
from study.core.storage import StudyPaths
from study.teachers.client import ChatClient, ChatRequest, TeacherError
from study.teachers.endpoint import start_serve, stop_teacher
from study.teachers.generate import build_corpora
from study.core.program_render import program_model_id, render
from study.teachers.program_serve import deploy_program_teacher

pytestmark = pytest.mark.ray
DATASET = DatasetSpec(name="arith", arith={"n_train": 30, "n_test": 5})


@pytest.fixture(scope="module")
def endpoint(ray_local):
    port = start_serve()
    problems = [p for split in ("train", "test") for p in load_split(DATASET, split)]
    endpoint = deploy_program_teacher(ProgramTeacher(kind="program", name="prog"), problems, port)
    yield endpoint
    stop_teacher(endpoint)


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


def test_building_corpora_deletes_only_its_own_serve_applications(endpoint, tmp_path):
    """`endpoint` stands for a `cotstudy serve-teacher` on the same cluster: this study's corpora
    are built through a Serve app of its own (its teacher even has the same name), which is gone
    afterwards, while the shared one was neither replaced nor deleted and still answers."""
    spec = parse_spec(small_spec(tmp_path / "out", formats=["cot"], teachers=[{"kind": "program", "name": "prog"}]))
    paths = StudyPaths.of(spec.storage, spec.name)
    build_corpora(spec, paths, corpus_keys(spec))
    assert storage.exists(paths.corpus(corpus_keys(spec)[0].corpus_id))
    assert set(serve.status().applications) == {"shared-teacher-prog"}
    problem = load_split(DATASET, "train")[0]
    request = ChatRequest(model=program_model_id("prog", 2, "cot"),
                          messages=teacher_messages(2, "cot", problem.question))
    assert ChatClient(base_url=endpoint.base_url).complete_all([request])[0].text == render(problem, 2, "cot")
