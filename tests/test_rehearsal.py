"""The README's cluster path, rehearsed on this machine as a user runs it (issue 15):

- a 3-node Ray cluster from `ray start`: a head that declares the trial drivers' resource as
  cluster.yaml's head node type does, and two one-CPU worker nodes, each with its own temp dir;
- the study's storage on a local S3 server (moto), the endpoint riding in the URI;
- the job sent with `ray job submit --working-dir` from a clean copy of the repository;
- a paper-shaped spec: released SVAMP corpora (two levels) plus answer-only, two tiny students.

Mid-grid the data folder is renamed away (nothing after the start may need the launching
machine's disk) and one worker node is stopped while it trains a cell, then started again. The
killed cell fails (one attempt per cell); `cotstudy resume` finishes it from another working
directory, reading only the storage. Every cell must be done exactly once, `results.parquet` must
hold each cell once, and `cotstudy report s3://...` must draw the figures.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, SHARED_DATA
from processes import (RAY, free_port, kill_all, kill_pids, marked_env, new_marker, processes_using, processes_with,
                       worker_log_lines)
from s3 import CREDENTIALS, s3_server

from ray.job_submission import JobStatus, JobSubmissionClient

from study.core.cells import expand_grid
from study.core.spec import parse_spec
from study.run.launch import DRIVER_RESOURCE
from trainables.train import TRAINING_FROM

pytestmark = [pytest.mark.ops, pytest.mark.ray, pytest.mark.rehearsal,
              pytest.mark.skipif(SHARED_DATA is None, reason="../shared/data is not here")]

STUDY = "rehearsal"
LEVELS = (1, 3)
RELEASED = [f"svamp/cot/SVAMP_ChatGPT_level{level}_ranked.json" for level in LEVELS]


def _clean_checkout(into: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked, plus new files not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def _data_copy(into: Path) -> Path:
    for name in ["svamp/SVAMP.json", *RELEASED]:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SHARED_DATA / name, into / name)
    return into


def _spec(data_dir: Path, storage_uri: str) -> dict:
    return {
        "name": STUDY,
        "storage": storage_uri,
        "data_dir": str(data_dir),
        "datasets": [{"name": "svamp"}],
        "teachers": [{"kind": "released", "name": "chatgpt", "release_name": "ChatGPT",
                      "files": ["svamp/cot/SVAMP_ChatGPT_level*_ranked.json"],
                      "levels_by_format": {"cot": list(LEVELS)}, "filter": "all"}],
        "granularities": list(LEVELS),
        "formats": ["cot", "answer_only"],
        "students": [{"name": "tiny-a", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                     {"name": "tiny-b", "tiny": {"layers": 2, "width": 32, "heads": 2}}],
        "training": {"max_steps": 400, "tokens_per_batch": 2048, "max_length": 384, "lr_peak": 0.01},  # ~20 s
        "evaluation": {"max_new_tokens": 32, "test_size": 12},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "trial_attempts": 1},
        "tokenizer": {"vocab_size": 512},
    }


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 300, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


class LocalCluster:
    """A head and worker nodes started with `ray start`, each node's processes marked apart so one
    node can be stopped alone."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.port, self.dashboard_port = free_port(), free_port()
        self.markers: dict[str, str] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, node: str, arguments: list[str]) -> None:
        self.markers.setdefault(node, new_marker())
        temp_dir = self.root / node
        temp_dir.mkdir(exist_ok=True)
        env = marked_env(self.markers[node], str(temp_dir), **{k: v for k, v in self.env.items()})
        # each node's agents on ports of their own: the defaults (52365, ...) may be held by another
        # Ray on this machine (the suite's own local Ray), and then no job can be submitted
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
        subprocess.run([RAY, "start", f"--temp-dir={temp_dir}", *ports, *arguments], env=env, check=True,
                       capture_output=True, timeout=180)

    def start_head(self) -> None:
        # no CPU on the head: every Train worker must go to a worker node, as on the real cluster
        self._start("head", ["--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=true",
                             f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1",
                             "--resources", json.dumps({DRIVER_RESOURCE: 1})])

    def start_worker(self, node: str) -> None:
        self._start(node, [f"--address={self.address}", "--num-cpus=1"])

    def stop(self, node: str) -> None:
        kill_all(self.markers[node])
        kill_pids(processes_using(self.root / node))

    def stop_all(self) -> None:
        for node in self.markers:
            self.stop(node)


def _submit(cluster: LocalCluster, checkout: Path, submission: str, env: dict[str, str],
            timeout_s: float = 120) -> subprocess.CompletedProcess:
    """`ray job submit` of the study from the clean checkout, as a user types it; tried again while
    the head's job agent is still starting ("No available agent to submit job")."""
    deadline = time.monotonic() + timeout_s
    while True:
        submitted = subprocess.run(
            [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(checkout),
             "--submission-id", submission, "--no-wait", "--", sys.executable, "-m", "study", "run", "rehearsal.yaml"],
            cwd=checkout.parent, env=env, capture_output=True, text=True, timeout=180)
        if submitted.returncode == 0 or "No available agent" not in submitted.stderr or time.monotonic() > deadline:
            return submitted
        time.sleep(2)


def _cell_lines(output: str, name: str) -> list[str]:
    """The progress lines of one cell that finished by training (not 'already done')."""
    return [line for line in output.splitlines()
            if re.match(rf"\[\d+/\d+\] {re.escape(name)}: accuracy", line) and "already done" not in line]


@pytest.mark.timeout(1800)
def test_the_cluster_path_end_to_end(tmp_path):
    short = Path(tempfile.mkdtemp(prefix="rr-", dir="/tmp"))  # Ray's socket paths have a length limit
    cluster = LocalCluster(short, CREDENTIALS)
    data_dir = _data_copy(tmp_path / "data")
    checkout = _clean_checkout(tmp_path / "checkout")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outputs: list[str] = []
    try:
        with s3_server() as s3:
            storage_uri = s3.uri("studies")
            study_uri = s3.uri(f"studies/{STUDY}")
            raw = _spec(data_dir, storage_uri)
            (checkout / "rehearsal.yaml").write_text(yaml.safe_dump(raw))
            cells = expand_grid(parse_spec(raw))
            assert len(cells) == 6
            cluster.start_head()
            cluster.start_worker("node-a")
            cluster.start_worker("node-b")
            env = marked_env(cluster.markers["head"], str(short / "head"), **CREDENTIALS)

            submission = f"rehearsal-{new_marker()[:8]}"
            submitted = _submit(cluster, checkout, submission, env)
            assert submitted.returncode == 0, submitted.stdout + submitted.stderr

            def attempts() -> list[str]:
                return [name for name in s3.objects(f"studies/{STUDY}") if name.endswith("attempt.txt")]

            _wait(lambda: bool(attempts()), "a first cell to start", 300)
            data_dir.rename(tmp_path / "data-gone")  # from now on nothing may read the launching disk

            # a Train worker on node-b that has begun its steps (not one still starting: Train may
            # start a worker group again elsewhere, and then no cell would fail)
            _wait(lambda: bool(processes_with(cluster.markers["node-b"], "RayTrainWorker"))
                  and bool(worker_log_lines(short / "node-b", TRAINING_FROM)), "a Train worker training on node-b", 300)
            time.sleep(2)  # into its 400 steps
            cluster.stop("node-b")  # its cell fails: one attempt per cell
            cluster.start_worker("node-b")

            jobs = JobSubmissionClient(cluster.dashboard)
            try:
                _wait(lambda: jobs.get_job_status(submission).is_terminal(), "the job to end", 900, poll_s=2)
            except AssertionError as error:
                raise AssertionError(f"{error}; the job's log ends:\n{jobs.get_job_logs(submission)[-4000:]}") from None
            job_log = jobs.get_job_logs(submission)
            outputs.append(job_log)
            assert jobs.get_job_status(submission) == JobStatus.FAILED, job_log[-4000:]  # exit 1: a failed cell
            assert "FAILED (see 'cotstudy status')" in job_log, job_log[-4000:]

            resumed = subprocess.run([sys.executable, "-m", "study", "resume", study_uri], cwd=elsewhere,
                                     env={**env, "RAY_ADDRESS": cluster.address}, capture_output=True, text=True,
                                     timeout=600)
            outputs.append(resumed.stdout + resumed.stderr)
            assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]

            combined = "\n".join(outputs)
            for cell in cells:
                assert len(_cell_lines(combined, cell.name)) == 1, (cell.name, combined[-4000:])
            objects = s3.objects(f"studies/{STUDY}")
            assert all(f"cells/{c.cell_id}/result.json" in objects for c in cells)
            with s3.filesystem.open_input_file(f"cotstudy-test/studies/{STUDY}/results.parquet") as handle:
                results = pd.read_parquet(handle)
            assert len(results) == len(cells) and results["cell_id"].is_unique

            report = subprocess.run([sys.executable, "-m", "study", "report", study_uri], cwd=elsewhere, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
            drawn = s3.objects(f"studies/{STUDY}")
            assert any(name.startswith("figures/") and name.endswith(".png") for name in drawn)
            assert not (elsewhere / "s3:").exists()
    finally:
        cluster.stop_all()
        shutil.rmtree(short, ignore_errors=True)
