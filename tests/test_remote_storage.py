"""A study on S3 (moto's S3 server on 127.0.0.1, started here): two drivers of the same study (the
second refuses), the first SIGKILLed mid-grid, and `cotstudy resume s3://...` finishing from the
remote storage alone. The teacher is an `openai` one (a local fake) whose API key must appear
nowhere: not in any object under the study, not in any output, not in Ray's logs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from conftest import REPO, small_spec, write_spec
from processes import processes_with
from s3 import BUCKET, CREDENTIALS, s3_server
from test_generation import SECRET, FakeTeacher

import analysis
from study.core import storage
from study.core.cells import expand_grid
from study.core.datasets import DatasetSpec, load_split
from study.core.spec import parse_spec, resolve_locations
from study.core.storage import ChecksumError, StudyPaths
from study.core.stored_splits import store_splits, stored_split
from study.run.inputs import check_inputs
from study.run.studies import StudyError, acquire_lock, open_study, prepare_storage, release_lock

@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server (tests/s3.py) for this module: its endpoint and a filesystem on it."""
    with s3_server() as server:
        yield server.endpoint, server.filesystem


def _objects(filesystem: pafs.S3FileSystem, prefix: str) -> dict[str, pafs.FileInfo]:
    infos = filesystem.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {info.path.removeprefix(prefix + "/"): info for info in infos if info.type == pafs.FileType.File}


def _wait_for(condition, what: str, process: subprocess.Popen, timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the driver ended (rc {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_uri_paths_keep_their_query_last():
    uri = "s3://bucket/studies?endpoint_override=127.0.0.1:9000&scheme=http"
    paths = StudyPaths.of(uri, "demo")
    assert paths.root == "s3://bucket/studies/demo?endpoint_override=127.0.0.1:9000&scheme=http"
    assert paths.corpus("c1") == "s3://bucket/studies/demo/corpora/c1.parquet?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.sibling(paths.cell_result("x"), ".sha256").startswith("s3://bucket/studies/demo/cells/x/result.json.sha256?")
    assert storage.base_name(paths.tune) == "tune" and storage.parent(paths.root) == uri
    assert storage.normalize_location("s3://bucket/studies/demo/") == "s3://bucket/studies/demo"


def test_lock_and_checksums_on_s3_with_the_endpoint_in_the_uri(s3_endpoint, monkeypatch, capsys):
    """No AWS_ENDPOINT_URL here: the endpoint rides in the URI's query, through every path."""
    endpoint, s3 = s3_endpoint
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    query = f"?endpoint_override={endpoint.removeprefix('http://')}&scheme=http"
    paths = StudyPaths.of(f"s3://{BUCKET}/fast{query}", "locked")
    holder = acquire_lock(paths, "run")
    assert "lock.json" in _objects(s3, f"{BUCKET}/fast/locked")
    with pytest.raises(StudyError, match=rf"^s3://{BUCKET}/fast/locked/lock.json\?endpoint_override=.*: study 'locked' is locked by 'run'"):
        acquire_lock(paths, "run")
    release_lock(paths, holder)
    assert "lock.json" not in _objects(s3, f"{BUCKET}/fast/locked")

    result = paths.cell_result("abc")
    storage.write_bytes_checked(result, b'{"accuracy": 0.25}')
    assert storage.read_bytes_checked(result) == b'{"accuracy": 0.25}'
    storage.write_bytes_atomic(result, b'{"accuracy": 0.95}')
    with pytest.raises(ChecksumError, match=r"result.json\?endpoint_override=.*: corrupted or truncated"):
        storage.read_bytes_checked(result)
    moved = storage.quarantine(result)
    assert not storage.exists(result) and storage.exists(moved) and storage.exists(storage.sibling(moved, ".sha256"))

    storage.write_text_atomic(paths.spec, "not: a spec")
    with pytest.raises(Exception, match=r"spec.yaml"):
        open_study(paths.root)


@pytest.mark.ops
@pytest.mark.ray
def test_a_study_on_s3_survives_a_killed_driver_and_resumes_from_s3_alone(tmp_path, s3_endpoint):
    endpoint, s3 = s3_endpoint
    raw = small_spec(tmp_path / "unused", name="remote", resources={"max_concurrent_trials": 1},
                     evaluation={"max_new_tokens": 16, "test_size": 8})
    answers = {p.question: p.answer for split in ("train", "test") for p in load_split(parse_spec(raw).datasets[0], split)}
    teacher = FakeTeacher(answers)
    raw.update(teachers=[{"kind": "openai", "name": "api", "base_url": teacher.base_url, "model": "fake-model",
                          "api_key_env": "COTSTUDY_TEST_KEY"}])
    spec_path = write_spec(tmp_path / "spec.yaml", raw)
    cells = expand_grid(parse_spec(raw))
    storage_uri, study = f"s3://{BUCKET}/studies", f"{BUCKET}/studies/remote"
    marker = f"COTSTUDY_TEST_RUN={uuid.uuid4().hex}"
    ray_tmp = tempfile.mkdtemp(prefix="ray-s3-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "RAY_AUTH_MODE": "disabled",
           "COTSTUDY_TEST_KEY": SECRET, "RAY_TMPDIR": ray_tmp, marker.split("=")[0]: marker.split("=")[1]}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    outputs = []
    try:
        first_log = open(tmp_path / "first.log", "w+")
        first = subprocess.Popen([sys.executable, "-m", "study", "run", str(spec_path), "--storage", storage_uri],
                                 cwd=REPO, env=env, stdout=first_log, stderr=subprocess.STDOUT)
        _wait_for(lambda: "lock.json" in _objects(s3, study), "the first driver's lock", first)

        second = subprocess.run([sys.executable, "-m", "study", "run", str(spec_path), "--storage", storage_uri],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        outputs += [second.stdout, second.stderr]
        assert second.returncode == 2, second.stderr
        assert f"error: s3://{study}/lock.json: study 'remote' is locked by 'run' on host" in second.stderr
        assert f"pid {first.pid}" in second.stderr

        done_first = lambda: any(f"cells/{c.cell_id}/result.json" in _objects(s3, study) for c in cells)  # noqa: E731
        _wait_for(done_first, "a first cell's result", first)
        first.send_signal(signal.SIGKILL)  # mid-grid: one cell done, the other not
        first.wait()
        for pid in processes_with(marker):  # Ray's processes outlive a killed driver
            os.kill(pid, signal.SIGKILL)
        before = _objects(s3, study)
        finished = [c for c in cells if f"cells/{c.cell_id}/result.json" in before]
        assert len(finished) == 1 and "results.parquet" not in before and "lock.json" in before
        first_log.seek(0)
        outputs.append(first_log.read())

        spec_path.unlink()  # resume needs nothing local: the spec, corpora and tokenizer are on S3
        resumed = subprocess.run([sys.executable, "-m", "study", "resume", f"s3://{study}"], cwd=workdir, env=env,
                                 capture_output=True, text=True, timeout=540)
        outputs += [resumed.stdout, resumed.stderr]
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "taking over the lock of 'run'" in resumed.stdout and "its process is gone" in resumed.stdout
        assert "1 of 2 cells done; resuming" in resumed.stdout
    finally:
        teacher.close()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        logs = [p for p in Path(ray_tmp).rglob("*") if p.is_file() and not p.is_socket()]
        log_bytes = [p.read_bytes() for p in logs]
        shutil.rmtree(ray_tmp, ignore_errors=True)

    after = _objects(s3, study)
    for cell in cells:
        assert [name for name in after if name.startswith(f"cells/{cell.cell_id}/result")] == \
            [f"cells/{cell.cell_id}/result.json", f"cells/{cell.cell_id}/result.json.sha256"]
    done = f"cells/{finished[0].cell_id}/result.json"
    assert after[done].mtime == before[done].mtime, "the cell finished before the kill did not run again"
    import pandas as pd

    results = pd.read_parquet(f"{study}/results.parquet", filesystem=s3)
    assert sorted(results["cell_id"]) == sorted(c.cell_id for c in cells) and results["cell_id"].is_unique
    assert "lock.json" not in after, "resume released the lock"
    assert any(name.startswith("tune/") for name in after) and any(name.startswith("figures/") for name in after)
    assert len(teacher.requests) == 80, "the corpus was generated once, before the kill"

    # the key: in no object under the study, no output, no Ray log
    for name in after:
        with s3.open_input_stream(f"{study}/{name}") as stream:
            assert SECRET.encode() not in stream.read(), name
    assert not any(SECRET in text for text in outputs)
    assert logs, "Ray wrote its logs under RAY_TMPDIR"
    for path, data in zip(logs, log_bytes):
        assert SECRET.encode() not in data, path


def test_a_study_reads_its_data_from_s3_and_stores_its_splits_there(s3_endpoint, monkeypatch, shared_data):
    """data_dir on S3 (the endpoint in the URI): the data set's file and a released glob are read
    through it, the frozen spec keeps the URI, and the splits go into the study folder on S3."""
    endpoint, s3 = s3_endpoint
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    query = f"?endpoint_override={endpoint.removeprefix('http://')}&scheme=http"
    for file in ("svamp/SVAMP.json", "svamp/cot/SVAMP_ChatGPT_level1_ranked.json"):
        with s3.open_output_stream(f"{BUCKET}/data/{file}") as stream:
            stream.write((shared_data / file).read_bytes())
    spec = parse_spec(small_spec(f"s3://{BUCKET}/studies{query}", name="svamp-s3", datasets=[{"name": "svamp"}],
                                 granularities=[1], formats=["cot"],
                                 teachers=[{"kind": "released", "name": "chatgpt", "release_name": "ChatGPT",
                                            "files": ["svamp/cot/SVAMP_ChatGPT_level*_ranked.json"]}]))
    spec = resolve_locations(spec, f"s3://{BUCKET}/data{query}")
    check_inputs(spec)
    paths, _ = prepare_storage(spec)
    store_splits(paths, spec.datasets)
    assert stored_split(paths, spec.datasets[0], "test") == load_split(
        DatasetSpec(name="svamp", path=str(shared_data / "svamp")), "test")
    frozen, _ = open_study(paths.root)
    assert frozen.data_dir == f"s3://{BUCKET}/data{query}"
    assert frozen.datasets[0].path == f"s3://{BUCKET}/data/svamp{query}"  # resolved against the kept URI
    assert {"data/svamp/train.jsonl", "data/svamp/test.jsonl.sha256"} <= set(_objects(s3, f"{BUCKET}/studies/svamp-s3"))


def test_analysis_names_a_study_on_s3_without_the_uri_query(s3_endpoint, monkeypatch):
    endpoint, s3 = s3_endpoint
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    query = f"?endpoint_override={endpoint.removeprefix('http://')}&scheme=http"
    study = f"s3://{BUCKET}/named/arith-grid{query}"
    frame = pd.DataFrame({"cell_id": ["c1"], "dataset": ["arith"], "teacher": ["program"], "granularity": [3],
                          "format": ["cot"], "student": ["s"], "seed": [0], "accuracy": [0.5], "n_test": [10]})
    storage.write_parquet_atomic(storage.join(study, "results.parquet"), frame)
    assert analysis.load(study)["study"].tolist() == ["arith-grid"]


def test_figures_and_report_of_an_s3_study_are_written_into_its_own_storage(s3_endpoint, tmp_path, monkeypatch):
    """Without --out, `cotstudy figures` / `report` of a URI write under the study on S3, and no
    local folder named after the scheme (`s3:`) appears in the working directory."""
    from test_analysis import synthetic_results

    from study.run.cli import main

    endpoint, s3 = s3_endpoint
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    study = f"s3://{BUCKET}/drawn/study"
    storage.write_parquet_atomic(storage.join(study, "results.parquet"), synthetic_results())
    assert main(["figures", study]) == 0
    assert main(["report", study]) == 0
    names = set(_objects(s3, f"{BUCKET}/drawn/study"))
    assert {"figures/granularity_curves.png", "report.md", "report.html", "tables.tex"} <= names, names
    assert list(tmp_path.iterdir()) == []


def test_a_cells_checkpoints_lose_their_optimizer_state_on_s3_too(s3_endpoint, monkeypatch):
    """What run_cell does once result.json exists, and the listing export relies on, on an object store."""
    import torch

    from trainables import checkpoints
    from trainables.cell import delete_optimizer_state
    from trainables.checkpoints import Counters, TrainingState

    endpoint, s3 = s3_endpoint
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    query = f"?endpoint_override={endpoint.removeprefix('http://')}&scheme=http"
    paths = StudyPaths.of(f"s3://{BUCKET}/drop{query}", "study")
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    state = TrainingState(model.state_dict(), optimizer.state_dict(), {}, Counters(step=2))
    with tempfile.TemporaryDirectory() as scratch:
        checkpoints.save(state, Path(scratch))
        storage.upload_dir(Path(scratch), storage.join(paths.cell_checkpoints("c1"), "checkpoint_1"))
    (found,) = storage.find_files(paths.cell_checkpoints("c1"), checkpoints.STATE_FILE)
    assert found.endswith(f"/drop/study/cells/c1/train/checkpoint_1/trainer_state.pt{query}")
    assert delete_optimizer_state(paths, "c1")
    with tempfile.TemporaryDirectory() as scratch:
        kept = checkpoints.read(storage.download_dir(storage.parent(found), Path(scratch)))
    assert kept.optimizer is None and kept.counters.step == 2
    assert not storage.is_empty_or_absent(paths.cell_checkpoints("c1"))
    assert storage.is_empty_or_absent(paths.cell_model("c1"))
