"""Operations: the study lock (two real processes), checksums of corpora and results (corrupted
files are detected, reported, and rebuilt or rerun)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, small_spec, write_spec
from ray import cloudpickle

from study.core import storage
from study.core.cells import corpus_keys, expand_grid
from study.run.cli import main
from study.core.corpora import load_corpus
from study.core.results import Measurements, cell_states, read_cell_result
from study.core.spec import parse_spec
from study.core.storage import ChecksumError, StudyPaths
from study.run.studies import StudyError, acquire_lock, read_lock, release_lock, study_lock
from study.teachers.generate import build_corpora

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import the tests folder

HOLD_THE_LOCK = """
import sys, time
from study.core.storage import StudyPaths
from study.run.studies import study_lock
with study_lock(StudyPaths(sys.argv[1]), "run"):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """A second real process that holds the lock of <tmp>/out/small until killed."""
    root = str(tmp_path / "out" / "small")
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, root], stdout=subprocess.PIPE, text=True,
                               cwd=REPO)
    assert process.stdout.readline().strip() == "locked"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_run_of_a_locked_study_refuses_and_writes_nothing(tmp_path, lock_holder, capsys):
    spec_path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out"))
    study_dir = tmp_path / "out" / "small"
    before = sorted(p.name for p in study_dir.iterdir())
    assert main(["run", str(spec_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {study_dir / 'lock.json'}: study 'small' is locked")
    assert f"pid {lock_holder.pid}" in error and "delete that file or add --break-lock" in error
    assert sorted(p.name for p in study_dir.iterdir()) == before == ["lock.json"], "no spec.yaml, no corpus"
    assert read_lock(StudyPaths(str(study_dir))).pid == lock_holder.pid, "the holder's lock is untouched"


def test_a_dead_drivers_lock_is_taken_over_with_a_note(tmp_path, lock_holder, capsys):
    paths = StudyPaths(str(tmp_path / "out" / "small"))
    write_spec(Path(paths.spec), small_spec(tmp_path / "out"))
    assert main(["status", paths.root]) == 0
    assert f"running: 'run' on host {socket.gethostname()}, pid {lock_holder.pid}, since " in capsys.readouterr().out
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait()
    assert read_lock(paths).pid == lock_holder.pid, "SIGKILL leaves the lock behind"
    assert main(["status", paths.root]) == 0
    assert "(stale: that process is gone)" in capsys.readouterr().out
    holder = acquire_lock(paths, "resume")
    assert "taking over the lock of 'run' on host" in capsys.readouterr().out
    assert read_lock(paths).pid == os.getpid()
    release_lock(paths, holder)
    assert read_lock(paths) is None


def test_a_lock_from_another_host_needs_break_lock(tmp_path, capsys):
    paths = StudyPaths(str(tmp_path / "small"))
    os.makedirs(paths.root)
    foreign = {"host": "gpu-node-7", "pid": 1, "pid_started": None, "started_at": "2026-01-01T00:00:00+00:00",
               "command": "run", "token": "theirs"}
    (tmp_path / "small" / "lock.json").write_text(json.dumps(foreign))
    with pytest.raises(StudyError, match=r"locked by 'run' on host gpu-node-7, pid 1"):
        acquire_lock(paths, "run")
    holder = acquire_lock(paths, "run", break_lock=True)
    assert "removing the lock (--break-lock)" in capsys.readouterr().out and read_lock(paths).token == holder.token
    release_lock(paths, holder)


def test_an_unreadable_lock_is_named_and_break_lock_clears_it(tmp_path, capsys):
    paths = StudyPaths(str(tmp_path / "small"))
    os.makedirs(paths.root)
    (tmp_path / "small" / "lock.json").write_text("")  # a driver died between create and write
    with pytest.raises(StudyError, match=r"lock.json: unreadable lock file .*delete it \(or add --break-lock\) if no run is going"):
        acquire_lock(paths, "run")
    release_lock(paths, acquire_lock(paths, "run", break_lock=True))
    assert read_lock(paths) is None


def test_the_lock_is_released_on_an_exception(tmp_path):
    paths = StudyPaths(str(tmp_path / "small"))
    with pytest.raises(RuntimeError):
        with study_lock(paths, "run"):
            assert read_lock(paths) is not None
            raise RuntimeError("boom")
    assert read_lock(paths) is None


def test_a_refused_run_releases_its_lock(tmp_path, capsys):
    """A run that stops on bad input (here: a changed spec under the same name) leaves no lock."""
    write_spec(tmp_path / "a.yaml", small_spec(tmp_path / "out"))
    study_dir = tmp_path / "out" / "small"
    study_dir.mkdir(parents=True)
    (study_dir / "spec.yaml").write_text((tmp_path / "a.yaml").read_text())
    changed = write_spec(tmp_path / "b.yaml", small_spec(tmp_path / "out", granularities=[2]))
    assert main(["run", str(changed)]) == 2
    assert "already exists with different cells" in capsys.readouterr().err
    assert sorted(p.name for p in study_dir.iterdir()) == ["spec.yaml"]


def test_a_corrupted_corpus_is_detected_named_and_rebuilt(tmp_path, capsys):
    spec = parse_spec(small_spec(tmp_path / "out", formats=["answer_only"]))
    paths, keys = StudyPaths.of(spec.storage, spec.name), corpus_keys(spec)
    build_corpora(spec, paths, keys)
    original = load_corpus(paths, keys[0])
    location = paths.corpus(keys[0].corpus_id)
    assert storage.exists(location + ".sha256")
    data = storage.read_bytes(location)
    storage.write_bytes_atomic(location, data[: len(data) // 2])  # truncated
    with pytest.raises(ChecksumError, match=rf"^{location}: corrupted or truncated: {len(data) // 2} bytes"):
        load_corpus(paths, keys[0])
    capsys.readouterr()
    build_corpora(spec, paths, keys)
    note = capsys.readouterr().out
    assert f"corpus {keys[0].name}: {location}: corrupted or truncated" in note and "building it again" in note
    assert load_corpus(paths, keys[0]).equals(original)
    set_aside = [p for p in os.listdir(os.path.dirname(location)) if ".corrupt-" in p]
    assert len(set_aside) == 2, set_aside  # the bad file and its checksum, kept for inspection


def test_a_result_without_a_recorded_checksum_is_not_trusted(tmp_path):
    paths = StudyPaths(str(tmp_path / "study"))
    storage.write_text_atomic(paths.cell_result("abc"), "{}")
    with pytest.raises(ChecksumError, match=r"result.json: no checksum recorded \(result.json.sha256 is missing\)"):
        read_cell_result(paths, "abc")


MEASURED = Measurements(student_params=1000, accuracy=0.25, n_test=16, n_correct=4, n_unextractable=0,
                        mean_generated_tokens=5.0, train_tokens=100, train_steps=6, train_s=1.0, tokens_per_s=100.0,
                        final_loss=1.0, dropped_examples=0, eval_s=1.0, teacher_accuracy=1.0,
                        mean_rationale_tokens=3.0)


def instant_cell(config: dict) -> None:
    """The real trainable (skip a done cell, write result.json, report), with training replaced by
    fixed measurements: Tune, storage and checksums are what is under test."""
    import trainables.cell

    original = trainables.cell.fit_cell
    trainables.cell.fit_cell = lambda cell, paths, resources, **tracking: MEASURED
    try:
        trainables.cell.run_cell(config)
    finally:
        trainables.cell.fit_cell = original


@pytest.mark.ray
def test_resume_reruns_a_cell_whose_result_is_corrupted_and_rebuilds_a_corrupted_corpus(tmp_path, ray_local, capsys):
    from study.run.launch import resume_study, run_study

    spec = parse_spec(small_spec(tmp_path / "out", name="checked", formats=["answer_only"],
                                 training={"max_steps": 6, "tokens_per_batch": 2048, "seeds": [0, 1]}))
    first = run_study(spec, trainable=instant_cell)
    assert first.count("done") == 2
    bad, good = expand_grid(spec)
    bad_result, good_result = first.paths.cell_result(bad.cell_id), first.paths.cell_result(good.cell_id)
    good_stamp = os.stat(good_result).st_mtime_ns
    text = storage.read_text(bad_result)
    storage.write_text_atomic(bad_result, text.replace('"accuracy": 0.25', '"accuracy": 0.95'))  # valid JSON, wrong
    corpus = first.paths.corpus(bad.corpus.corpus_id)
    storage.write_bytes_atomic(corpus, storage.read_bytes(corpus)[:100])
    capsys.readouterr()

    assert main(["status", first.paths.root]) == 0
    assert "1 done, 0 failed, 1 pending" in capsys.readouterr().out, "a corrupted result is not done"

    second = resume_study(first.paths.root, trainable=instant_cell)
    out = capsys.readouterr().out
    assert f"cell {bad.name}: {bad_result}: corrupted or truncated" in out and "the cell will run again" in out
    assert f"corpus {bad.corpus.name}: {corpus}: corrupted or truncated" in out
    assert second.count("done") == 2
    assert read_cell_result(second.paths, bad.cell_id).accuracy == 0.25, "rerun, not the corrupted value"
    assert os.stat(good_result).st_mtime_ns == good_stamp, "the intact cell did not run again"
    assert sorted(second.results["cell_id"]) == sorted([bad.cell_id, good.cell_id])
    assert [s.state for s in cell_states(second.paths, [bad, good])] == ["done", "done"]
    assert load_corpus(second.paths, bad.corpus)["uid"].is_unique


def test_a_cell_tried_again_is_pending_not_failed_while_it_runs(tmp_path, monkeypatch):
    import trainables.cell
    from study.core.spec import ResourcesSpec

    spec = parse_spec(small_spec(tmp_path / "out"))
    paths = StudyPaths.of(spec.storage, spec.name)
    cell = expand_grid(spec)[0]
    storage.write_text_atomic(paths.cell_error(cell.cell_id), "Traceback: the first attempt failed")
    seen = []

    def fit_again(*args: object, **kwargs: object) -> None:
        seen.append(cell_states(paths, [cell])[0].state)
        raise RuntimeError("the second attempt failed too")

    monkeypatch.setattr(trainables.cell, "fit_cell", fit_again)
    with pytest.raises(RuntimeError, match="second attempt"):
        trainables.cell.run_cell(trainables.cell.cell_config(cell, paths, ResourcesSpec()))
    assert seen == ["pending"]
    state = cell_states(paths, [cell])[0]
    assert state.state == "failed" and "the second attempt failed too" in state.error
