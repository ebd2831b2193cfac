"""Processes that tests start outside pytest (drivers, `ray start` nodes, servers): each carries a
marker in its environment, so a test finds and kills exactly its own processes, by pid (never
`ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
MARKER_VARIABLE = "COTSTUDY_TEST_RUN"


def new_marker() -> str:
    return uuid.uuid4().hex


def marked_env(marker: str, ray_tmp: str, **extra: str) -> dict[str, str]:
    """Environment for processes a test starts: its marker, Ray's temp dir (short: Ray's socket
    paths have a length limit), no auth token, no usage stats."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp, MARKER_VARIABLE: marker,
            "RAY_USAGE_STATS_ENABLED": "0", **extra}


def processes_with(marker: str, title: str = "") -> list[int]:
    """Pids whose environment carries `marker` and whose command line contains `title`."""
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


def kill_all(marker: str) -> None:
    kill_pids(processes_with(marker))


def processes_using(folder: Path) -> list[int]:
    """Pids with a file open under `folder` (Ray's agents overwrite their environment with their
    process title, so a marker cannot find them; their logs under the node's temp dir can)."""
    found = []
    prefix = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_zero_result(function, world: int, timeout: float = 120.0):
    """Runs function(rank, world, port, results) in `world` spawned processes (each joins a gloo
    group on a free port) and returns what rank 0 puts into `results`: an exception after
    `timeout` instead of a hang; processes still alive after that are killed."""
    import torch.multiprocessing as mp

    results = mp.get_context("spawn").Queue()
    context = mp.start_processes(function, args=(world, free_port(), results), nprocs=world, start_method="spawn",
                                 join=False)
    try:
        return results.get(timeout=timeout)
    finally:
        for process in context.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def worker_log_lines(ray_temp_dir: str | Path, text: str) -> list[str]:
    """The lines holding `text` in the worker logs (`worker-*.out`) under a Ray node's temp dir:
    what Train workers and Tune trials print (the project's Ray runs with log_to_driver off)."""
    return [line for path in Path(ray_temp_dir).rglob("worker-*.out")
            for line in path.read_text(errors="replace").splitlines() if text in line]
