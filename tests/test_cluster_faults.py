"""Operations on real Ray processes: a study on a two-node cluster started with `ray start` (both
nodes on this machine, each with its own CPU and temp dir), and a Ray Train worker killed mid-cell
(the trial is retried and training resumes from its last checkpoint, not from step 0)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, small_spec, write_spec

from study.run.launch import DRIVER_RESOURCE

pytestmark = [pytest.mark.ops, pytest.mark.ray]

RAY = str(Path(sys.executable).parent / "ray")


def _marked_env(tmp_root: str) -> tuple[dict, str]:
    """Env for processes this test starts: a unique marker (to find and kill exactly them, by pid)
    and Ray's temp dir under a short folder (Ray's socket paths have a length limit)."""
    marker = uuid.uuid4().hex
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tmp_root, "COTSTUDY_TEST_RUN": marker,
            "RAY_USAGE_STATS_ENABLED": "0"}, marker


def _processes_with(marker: str, title: str = "") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and title.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _kill_all(marker: str) -> None:
    for pid in _processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _actor_logs(temp_dir: str, actor: str) -> list[Path]:
    """Ray workers' log files on one node that hosted an actor of this class."""
    return [p for p in Path(temp_dir).rglob("worker-*.out") if f":actor_name:{actor}".encode() in p.read_bytes()]


def test_a_study_runs_on_a_two_node_cluster_with_trials_on_both_nodes(tmp_path):
    head_tmp, worker_tmp = tempfile.mkdtemp(prefix="rh-", dir="/tmp"), tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    env, marker = _marked_env(head_tmp)
    port = _free_port()
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", name="two-nodes", formats=["answer_only"], evaluation={"max_new_tokens": 16, "test_size": 8},
        training={"max_steps": 6, "tokens_per_batch": 2048, "seeds": [0, 1]}))
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={head_tmp}",
                        "--include-dashboard=false", "--resources", json.dumps({"head_node": 1, DRIVER_RESOURCE: 1})],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={worker_tmp}",
                        "--resources", '{"second_node": 1}'],
                       env={**env, "RAY_TMPDIR": worker_tmp}, check=True, capture_output=True, timeout=120)
        run = subprocess.run([sys.executable, "-m", "study", "run", str(spec)], cwd=REPO, capture_output=True,
                             text=True, timeout=540, env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"})
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        results = pd.read_parquet(tmp_path / "out" / "two-nodes" / "results.parquet")
        assert len(results) == 2 and results["cell_id"].is_unique
        # one CPU per node and one CPU per Train worker: the two cells' workers ran one on each node
        assert _actor_logs(head_tmp, "RayTrainWorker") and _actor_logs(worker_tmp, "RayTrainWorker")
        # the trial drivers are pinned to the head (its driver resource), never on the worker node
        assert _actor_logs(head_tmp, "ImplicitFunc") and not _actor_logs(worker_tmp, "ImplicitFunc")
    finally:
        _kill_all(marker)  # never `ray stop`: it would stop every Ray on this machine
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def test_a_killed_train_worker_is_retried_from_its_last_checkpoint(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="rk-", dir="/tmp")
    env, marker = _marked_env(ray_tmp)
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", name="worker-killed", formats=["answer_only"],
        evaluation={"max_new_tokens": 16, "test_size": 8},
        training={"max_steps": 150, "tokens_per_batch": 256, "max_length": 256},
        resources={"trial_attempts": 2, "checkpoint_every_s": 0}))
    cell_dir = tmp_path / "out" / "worker-killed" / "cells"
    driver = subprocess.Popen([sys.executable, "-m", "study", "run", str(spec)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # kill once Train has registered a checkpoint (its manager snapshot names one), not when the
        # folder first appears: a checkpoint the controller never recorded is not restorable
        deadline = time.monotonic() + 400
        while not any("checkpoint_dir_name" in p.read_text() for p in cell_dir.glob("*/train/checkpoint_manager_snapshot.json")):
            assert driver.poll() is None and time.monotonic() < deadline, "no checkpoint before the driver ended"
            time.sleep(0.2)
        workers = _processes_with(marker, "RayTrainWorker")
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        out, _ = driver.communicate(timeout=540)
        assert driver.returncode == 0, out[-4000:]
        (result,) = list(cell_dir.glob("*/result.json"))
        assert '"train_steps": 150' in result.read_text()
        assert "RayTrainWorker" in (cell_dir / result.parent.name / "error.txt").read_text()
        resumed = [line for p in Path(ray_tmp).rglob("worker-*.out")
                   for line in p.read_text(errors="replace").splitlines() if "resumed from checkpoint at step" in line]
        assert len(resumed) == 1, "the retried trial started from step 0"
        assert 0 < int(resumed[0].rsplit(" ", 1)[1]) < 150
    finally:
        if driver.poll() is None:
            driver.kill()
        _kill_all(marker)
        shutil.rmtree(ray_tmp, ignore_errors=True)
