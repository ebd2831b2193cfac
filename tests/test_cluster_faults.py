"""Operations on real Ray processes: a study on a two-node cluster started with `ray start` (both
nodes on this machine, each with its own temp dir: a CPU-less head with the driver resource and a
2-CPU worker), local storage refused there, and a Ray Train worker killed mid-cell
(the trial is retried and training resumes from its last checkpoint, not from step 0)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, small_spec, write_spec
from processes import RAY, free_port, kill_all, marked_env, new_marker, processes_with

from study.run.launch import DRIVER_RESOURCE

pytestmark = [pytest.mark.ops, pytest.mark.ray]

def _marked_env(tmp_root: str) -> tuple[dict, str]:
    marker = new_marker()
    return marked_env(marker, tmp_root), marker


def _actor_logs(temp_dir: str, actor: str) -> list[Path]:
    """Ray workers' log files on one node that hosted an actor of this class."""
    return [p for p in Path(temp_dir).rglob("worker-*.out") if f":actor_name:{actor}".encode() in p.read_bytes()]


@dataclass(frozen=True)
class TwoNodes:
    env: dict  # RAY_ADDRESS set: a `cotstudy` subprocess joins this cluster
    head_tmp: str
    worker_tmp: str


@pytest.fixture(scope="module")
def two_nodes():
    """A head with no CPU of its own and the driver resource (as cluster.yaml's head, which trial
    drivers need and Train workers cannot use), and a worker node with 2 CPUs, both started with
    `ray start`; every process they started is killed afterwards, by pid."""
    head_tmp, worker_tmp = tempfile.mkdtemp(prefix="rh-", dir="/tmp"), tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    env, marker = _marked_env(head_tmp)
    port = free_port()
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=0", f"--temp-dir={head_tmp}",
                        "--include-dashboard=false", "--resources", json.dumps({DRIVER_RESOURCE: 1})],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", f"--temp-dir={worker_tmp}"],
                       env={**env, "RAY_TMPDIR": worker_tmp}, check=True, capture_output=True, timeout=120)
        yield TwoNodes(env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, head_tmp=head_tmp, worker_tmp=worker_tmp)
    finally:
        kill_all(marker)  # never `ray stop`: it would stop every Ray on this machine
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def test_on_two_nodes_trial_drivers_run_on_the_head_and_train_workers_on_the_other_node(tmp_path, two_nodes):
    """Storage as file://: a folder every node reaches (both are this machine); no cluster config,
    so concurrency is what the nodes hold now: both trials at once on the worker node's 2 CPUs."""
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        f"file://{tmp_path / 'out'}", name="two-nodes", formats=["answer_only"],
        evaluation={"max_new_tokens": 16, "test_size": 8},
        training={"max_steps": 6, "tokens_per_batch": 2048, "seeds": [0, 1]}))
    run = subprocess.run([sys.executable, "-m", "study", "run", str(spec)], cwd=REPO, capture_output=True,
                         text=True, timeout=540, env=two_nodes.env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "trials at once: up to 2 (the Train workers its nodes hold now" in run.stdout
    results = pd.read_parquet(tmp_path / "out" / "two-nodes" / "results.parquet")
    assert len(results) == 2 and results["cell_id"].is_unique
    # the trial drivers hold the head's driver resource; the head has no CPU for a Train worker
    assert _actor_logs(two_nodes.head_tmp, "ImplicitFunc") and not _actor_logs(two_nodes.worker_tmp, "ImplicitFunc")
    assert _actor_logs(two_nodes.worker_tmp, "RayTrainWorker") and not _actor_logs(two_nodes.head_tmp, "RayTrainWorker")


def test_local_storage_on_a_two_node_cluster_is_refused_before_anything_is_written(tmp_path, two_nodes):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", name="local-on-two"))
    run = subprocess.run([sys.executable, "-m", "study", "run", str(spec)], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=two_nodes.env)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"error: storage: '{tmp_path / 'out'}' is a local folder, but the Ray cluster at RAY_ADDRESS has 2 nodes" in run.stderr
    assert not (tmp_path / "out").exists()


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
        workers = processes_with(marker, "RayTrainWorker")
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
        kill_all(marker)
        shutil.rmtree(ray_tmp, ignore_errors=True)
