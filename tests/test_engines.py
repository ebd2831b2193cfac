"""resources.engine: a cell trained in the Tune trial itself (in_trial) gives what the same cell
gives as a Ray Train job (ray_train): the same loss curve, predictions and result, also when the
trial actor is reused for the next cell (L3 cot, then answer-only); and a killed in_trial trial
is tried again from its last checkpoint (trainables/sessions.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, small_spec, write_spec
from processes import kill_all, marked_env, new_marker, processes_with, worker_log_lines

from study.core.spec import ResourcesSpec, SpecError, load_spec
from study.run.launch import run_study

STEPS = 6
TRACK_EVERY_STEP = {"every_steps": 1, "min_interval_s": 0}
# reported by every step and checkpoint: what must be equal (timings are not)
CURVE = ("step", "loss", "train_tokens")
RESULT = ("accuracy", "final_loss", "train_tokens", "train_steps", "n_correct", "mean_generated_tokens", "packed")


def test_in_trial_is_refused_for_several_workers_or_a_gpu_naming_the_field(tmp_path):
    for resources in ({"engine": "in_trial", "workers_per_trial": 2}, {"engine": "in_trial", "gpus_per_worker": 1}):
        spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", resources=resources))
        with pytest.raises(SpecError, match=r"resources.*engine 'in_trial'.*workers_per_trial 1"):
            load_spec(spec)
    assert ResourcesSpec().engine == "ray_train"


def _curves(tune_dir: Path) -> dict[str, list[tuple]]:
    """Each trial's reports with step metrics (Tune's result.json lines), by cell folder name."""
    curves = {}
    for results in tune_dir.glob("*/result.json"):
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        curves[results.parent.name] = [tuple(r[k] for k in CURVE) for r in lines if "total_steps" in r]
    return curves


def _run(tmp_path: Path, engine: str, concurrent: int) -> Path:
    spec = small_spec(tmp_path / engine, name="engines", tracking=TRACK_EVERY_STEP,
                      training={"max_steps": STEPS, "tokens_per_batch": 2048, "max_length": 256},
                      evaluation={"max_new_tokens": 24, "test_size": 8},
                      resources={"engine": engine, "max_concurrent_trials": concurrent})
    outcome = run_study(load_spec(write_spec(tmp_path / f"{engine}.yaml", spec)))
    assert outcome.count("done") == 2, outcome.states
    return tmp_path / engine / "engines"


@pytest.mark.ray
def test_the_same_cells_give_the_same_curves_predictions_and_results_on_both_engines(tmp_path, ray_local):
    on_train = _run(tmp_path, "ray_train", concurrent=2)
    in_trial = _run(tmp_path, "in_trial", concurrent=1)  # one trial actor, reused for the second cell
    train_curves, trial_curves = _curves(on_train / "tune"), _curves(in_trial / "tune")
    assert sorted(train_curves) == sorted(trial_curves) and len(train_curves) == 2
    for cell, curve in train_curves.items():
        assert {step for step, _, _ in curve} == set(range(1, STEPS + 1)), curve  # every step reported
        assert trial_curves[cell] == curve, cell
    train_results = pd.read_parquet(on_train / "results.parquet").set_index("cell_id").sort_index()
    trial_results = pd.read_parquet(in_trial / "results.parquet").set_index("cell_id").sort_index()
    pd.testing.assert_frame_equal(train_results[list(RESULT)], trial_results[list(RESULT)])
    for cell_id in train_results.index:
        predictions = [pd.read_parquet(root / "cells" / cell_id / "predictions.parquet")
                       for root in (on_train, in_trial)]
        pd.testing.assert_frame_equal(*predictions)
        assert (in_trial / "cells" / cell_id / "model" / "config.json").exists()


@pytest.mark.ops
@pytest.mark.ray
def test_a_killed_in_trial_cell_is_tried_again_from_its_last_checkpoint(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    marker = new_marker()
    env = marked_env(marker, ray_tmp)
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", name="trial-killed", formats=["answer_only"],
        evaluation={"max_new_tokens": 16, "test_size": 8},
        training={"max_steps": 150, "tokens_per_batch": 256, "max_length": 256},
        resources={"trial_attempts": 2, "checkpoint_every_s": 0, "engine": "in_trial"}))
    cell_dir = tmp_path / "out" / "trial-killed" / "cells"
    driver = subprocess.Popen([sys.executable, "-m", "study", "run", str(spec)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(cell_dir.glob("*/train/in_trial_checkpoint.txt")):
            assert driver.poll() is None and time.monotonic() < deadline, "no checkpoint before the driver ended"
            time.sleep(0.1)
        trials = processes_with(marker, "ImplicitFunc")
        assert len(trials) == 1, trials
        os.kill(trials[0], signal.SIGKILL)
        out, _ = driver.communicate(timeout=300)
        assert driver.returncode == 0, out[-4000:]
        (result,) = list(cell_dir.glob("*/result.json"))
        assert '"train_steps": 150' in result.read_text()
        resumed = worker_log_lines(ray_tmp, "resumed from checkpoint at step")
        assert len(resumed) == 1, "the retried trial started from step 0"
        assert 0 < int(resumed[0].rsplit(" ", 1)[1]) < 150
        assert len(list((result.parent / "train").glob("checkpoint_*"))) == 1  # the last one kept
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_all(marker)
        shutil.rmtree(ray_tmp, ignore_errors=True)
