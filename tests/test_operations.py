"""Operations without Ray: the study lock (two real processes), checksums of corpora and results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, small_spec, write_spec

from study.cli import main
from study.storage import StudyPaths
from study.studies import StudyError, acquire_lock, read_lock, release_lock, study_lock

HOLD_THE_LOCK = """
import sys, time
from study.storage import StudyPaths
from study.studies import study_lock
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
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait()
    assert read_lock(paths).pid == lock_holder.pid, "SIGKILL leaves the lock behind"
    holder = acquire_lock(paths, "resume")
    assert f"taking over the lock of 'run' on host" in capsys.readouterr().out
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
    assert "--break-lock" in capsys.readouterr().out and read_lock(paths).token == holder.token
    release_lock(paths, holder)


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
