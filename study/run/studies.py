"""A study's folder in storage: creating it for a run, opening it for resume and status, and the
lock that keeps two drivers out of the same study.

No Ray here, so `cotstudy status` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from study.core import storage
from study.core.cells import Cell, expand_grid
from study.core.spec import (
    StudySpec,
    TeacherSpec,
    frozen_locations,
    parse_spec_text,
    relative_locations,
    resolve_locations,
    spec_to_yaml,
)
from study.core.storage import StudyPaths

log = logging.getLogger(__name__)


class StudyError(RuntimeError):
    """A study that cannot start (storage, a changed spec, not a study folder, a cluster too small); nothing was run."""


def check_study_folder(spec: StudySpec) -> tuple[StudyPaths, list[Cell]]:
    """Refuse, writing nothing, a study folder that is neither empty (or absent) nor this study's:
    one holding files cotstudy did not write (its results.parquet would be overwritten), or a
    study of the same name whose cells differ."""
    paths = StudyPaths.of(spec.storage, spec.name)
    cells = expand_grid(spec)
    try:
        has_spec = storage.exists(paths.spec)
        foreign = [] if has_spec else [name for name in storage.entry_names(paths.root) if not _ours(name)]
    except OSError as error:
        raise StudyError(f"storage: {error}") from None
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise StudyError(f"{paths.root}: holds files that are not a cotstudy study's ({shown}) and no spec.yaml; "
                         "a study folder must be empty or this study's own: give the study another name or "
                         "storage (nothing there was touched)")
    if has_spec:
        stored = read_frozen_spec(paths)
        if {c.cell_id for c in expand_grid(stored)} != {c.cell_id for c in cells}:
            raise StudyError(
                f"{paths.spec}: study '{spec.name}' already exists with different cells; "
                "give the study a new name, or resume it with 'cotstudy resume'"
            )
    return paths, cells


def _ours(name: str) -> bool:
    """What a driver writes into a study folder before its spec.yaml: the lock and a write probe."""
    return name == "lock.json" or name.startswith(storage.WRITE_PROBE_PREFIX)


def prepare_storage(spec: StudySpec) -> tuple[StudyPaths, list[Cell]]:
    """Freeze the spec in the study folder, with the teachers' own prompt libraries (their content
    is in the ids) and its data locations relative to the data folder (`frozen_locations`), after
    `check_study_folder` (again: under the lock). Call it under `study_lock`, after the last check
    that can refuse the run: a frozen spec left by a refused run would refuse the corrected spec."""
    paths, cells = check_study_folder(spec)
    storage.write_text_atomic(paths.spec, spec_to_yaml(frozen_locations(_freeze_prompts(spec, paths))))
    return paths, cells


def _freeze_prompts(spec: StudySpec, paths: StudyPaths) -> StudySpec:
    """The spec with each teacher's own prompt library copied into the study folder and named
    relative to it, so `status` and `resume` read nothing outside the folder."""

    def freeze(teacher: TeacherSpec) -> TeacherSpec:
        def copy_in(location: str) -> str:
            storage.write_text_atomic(paths.prompt_library(teacher.name), storage.read_text(location))
            return paths.prompt_library_name(teacher.name)

        return teacher.relocate_prompts(copy_in)

    return spec.model_copy(update={"teachers": [freeze(teacher) for teacher in spec.teachers]})


def read_frozen_spec(paths: StudyPaths) -> StudySpec:
    """A study's frozen spec, its prompt libraries read from the study folder."""
    spec = parse_spec_text(storage.read_text(paths.spec), paths.spec)
    teachers = [teacher.relocate_prompts(paths.in_study) for teacher in spec.teachers]
    return spec.model_copy(update={"teachers": teachers})


def open_study(study_dir: str, data_dir: str | None = None) -> tuple[StudySpec, StudyPaths]:
    """The frozen spec of an existing study folder, with storage set to where the folder is.

    Its data locations (needed only to rebuild inputs missing from the folder) are resolved
    against `data_dir` (--data-dir), else the frozen spec's own `data_dir` (a URI, or the folder a
    study frozen before its data was stored with it names), else left relative, with `data_dir`
    None: then nothing can be rebuilt from the data set's files."""
    paths = StudyPaths(storage.normalize_location(study_dir))
    try:
        found = storage.exists(paths.spec)
    except OSError as error:
        raise StudyError(str(error)) from None
    if not found:
        raise StudyError(f"{study_dir}: not a study folder (no spec.yaml)")
    spec = read_frozen_spec(paths)
    source = data_dir if data_dir is not None else spec.data_dir
    if source is not None:
        spec = resolve_locations(relative_locations(spec), storage.normalize_location(source))
    return spec.model_copy(update={"storage": storage.parent(paths.root)}), paths


LOCK_SETTLE_S = 1.0  # object stores: how long a driver waits before reading its lock back


@dataclass(frozen=True)
class LockHolder:
    """Who holds a study's lock: the driver process of one `cotstudy run` / `resume`."""

    host: str
    pid: int
    pid_started: str | None  # the process's start time on its host, so a reused pid is not taken for it
    started_at: str
    command: str
    token: str

    def describe(self) -> str:
        return f"'{self.command}' on host {self.host}, pid {self.pid}, since {self.started_at}"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (Linux /proc; None elsewhere or if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime, counting after the command name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: LockHolder) -> bool:
    """A lock is stale when its driver ran on this host and that process is gone. A holder on
    another host cannot be checked from here: only --break-lock (or deleting the file) clears it."""
    if holder.host != socket.gethostname():
        return False
    if not _pid_alive(holder.pid):
        return True
    started = _process_start(holder.pid)
    return holder.pid_started is not None and started is not None and started != holder.pid_started


def read_lock(paths: StudyPaths) -> LockHolder | None:
    if not storage.exists(paths.lock):
        return None
    try:
        return LockHolder(**json.loads(storage.read_text(paths.lock)))
    except (ValueError, TypeError) as error:  # torn or hand-edited: name it rather than guess
        raise StudyError(f"{paths.lock}: unreadable lock file ({error}); "
                         "delete it (or add --break-lock) if no run is going") from None


def _create_lock(paths: StudyPaths, holder: LockHolder) -> bool:
    """Create the lock file unless one exists. Local folders use O_EXCL (atomic); object stores have
    no create-if-absent in pyarrow, so write, wait, and read back: of two racing drivers only the
    last writer sees its own token."""
    text = json.dumps(asdict(holder), indent=2)
    if not storage.is_uri(paths.lock):
        try:
            descriptor = os.open(paths.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        return True
    if storage.exists(paths.lock):
        return False
    storage.write_text_atomic(paths.lock, text)
    time.sleep(LOCK_SETTLE_S)
    current = read_lock(paths)
    return current is not None and current.token == holder.token


def _locked_error(paths: StudyPaths, holder: LockHolder) -> StudyError:
    return StudyError(
        f"{paths.lock}: study '{storage.base_name(paths.root)}' is locked by {holder.describe()}. "
        "Wait for that run to end; if it is no longer running (killed, or its machine is gone), "
        "delete that file or add --break-lock"
    )


def acquire_lock(paths: StudyPaths, command: str, break_lock: bool = False) -> LockHolder:
    """Check storage is writable, then take the study's lock or raise StudyError naming its holder.
    A stale lock (a dead driver on this host) is taken over with a note; --break-lock takes any."""
    try:
        storage.check_writable(paths.root)
    except OSError as error:
        raise StudyError(f"storage: {error}") from None
    pid = os.getpid()
    holder = LockHolder(host=socket.gethostname(), pid=pid, pid_started=_process_start(pid),
                        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        command=command, token=uuid.uuid4().hex)
    if break_lock and storage.exists(paths.lock):  # whatever is there, even an unreadable file
        log.info(f"removing the lock (--break-lock): {paths.lock}")
        storage.delete_file(paths.lock)
    existing = read_lock(paths)
    if existing is not None and is_stale(existing):
        log.info(f"taking over the lock of {existing.describe()} (its process is gone): {paths.lock}")
        storage.delete_file(paths.lock)
    for _ in range(2):  # a second try only if the holder let go between our look and our create
        if _create_lock(paths, holder):
            return holder
        current = read_lock(paths)
        if current is not None:
            raise _locked_error(paths, current)
    raise StudyError(f"{paths.lock}: could not take the study's lock (another driver is starting)")


def release_lock(paths: StudyPaths, holder: LockHolder) -> None:
    """Remove the lock if it is still ours (a --break-lock run may have taken it over)."""
    current = read_lock(paths)
    if current is not None and current.token == holder.token:
        storage.delete_file(paths.lock)


@contextmanager
def study_lock(paths: StudyPaths, command: str, break_lock: bool = False) -> Iterator[LockHolder]:
    """Hold the study's lock for the body; released on return and on any exception (SIGTERM
    becomes SystemExit once Ray is initialised, so `ray job stop` releases it too)."""
    created = _first_missing(paths.root)
    holder = acquire_lock(paths, command, break_lock)
    try:
        yield holder
    finally:
        release_lock(paths, holder)
        if created is not None and not storage.holds_files(created):  # a refused run leaves no empty folders
            storage.delete_dir(created)


def _first_missing(location: str) -> str | None:
    """The outermost folder of `location` (itself included) that does not exist yet; None if it does.
    Object stores have no empty folders: there it is None."""
    if storage.is_uri(location) or storage.exists(location):
        return None
    while (up := storage.parent(location)) and not storage.exists(up):
        location = up
    return location
