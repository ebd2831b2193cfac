"""The GPU path (marked `gpu`, skipped without CUDA): one cell trained on a GPU worker with bf16,
varlen flash attention, compiled layers and activation checkpointing, then evaluated (vLLM when
installed), with GPU accounting in its result; and vLLM's outputs equal transformers' on the GPU."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import small_spec

from study.core.spec import EvalSpec, parse_spec

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.ray
def test_a_cell_trains_and_evaluates_on_a_gpu_worker(tmp_path, ray_local):
    from study.run.launch import run_study

    spec = parse_spec(small_spec(
        tmp_path / "out", name="gpu", formats=["cot"],
        students=[{"name": "s", "tiny": {"layers": 2, "width": 128, "heads": 4}}],  # head size 32 (vLLM's minimum)
        training={"max_steps": 20, "tokens_per_batch": 2048, "max_length": 256},
        resources={"gpus_per_worker": 1, "cpus_per_worker": 1, "compile": True, "activation_checkpointing": True}))
    outcome = run_study(spec)
    assert outcome.count("done") == 1, [s.error for s in outcome.states]
    row = outcome.results.iloc[0]
    assert row["train_steps"] == 20 and row["final_loss"] < 6
    assert row["peak_memory_gb"] > 0 and row["gpu_s"] > 0
    assert row["eval_engine"] == ("vllm" if HAS_VLLM else "transformers")
    listed = any(name in torch.cuda.get_device_name() for name in ("H100", "H200", "A100"))
    assert (row["mfu"] is not None and 0 < row["mfu"] < 1) if listed else row["mfu"] is None


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed: pip install 'cotstudy[gpu]'")
def test_vllm_on_the_gpu_generates_what_transformers_generates(tmp_path):
    from test_evaluate import FORCED, _train_forced_student

    from trainables.evaluate import evaluate

    model, tokenizer = _train_forced_student(tmp_path / "forced")
    model = model.to("cuda")
    problems = [problem for problem, _ in FORCED]
    ours, theirs = (evaluate(model, tokenizer, "svamp", problems, EvalSpec(max_new_tokens=48, engine=engine)).predictions
                    for engine in ("transformers", "vllm"))
    columns = ["output", "answer", "correct", "generated_tokens"]
    assert ours[columns].fillna("-").equals(theirs[columns].fillna("-"))
