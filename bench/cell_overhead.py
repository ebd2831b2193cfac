"""Per-cell fixed cost and grid efficiency: what a cell costs outside its own training and
evaluation, measured through the real `cotstudy run` path (study.run.launch.run_study, the
real `run_cell` trainable, a local Ray, a fresh storage folder in a temp dir that is deleted after).

Minimal cells (the default): N seeds of one arith cell (64 training problems, the program teacher
at level 1, a 1-layer width-32 tiny student, max_steps 1, test_size 4, max_new_tokens 8), so
nearly all of a cell's time is fixed cost:
    python bench/cell_overhead.py                # 8 cells
    python bench/cell_overhead.py --cells 16
The grid efficiency of a demo-sized run (specs/demo.yaml, 12 cells of 500 steps; 3 to 5 minutes on an
idle 2-core machine), or of any spec's grid (e.g. the paper-shaped specs/svamp-tiny.yaml):
    python bench/cell_overhead.py --demo
    python bench/cell_overhead.py --spec specs/svamp-tiny.yaml
(set RAY_AUTH_MODE=disabled as the tests do, or Ray writes an auth token under the home folder).

What it prints, in seconds of wall time (each trial's start and end are taken inside the trial
process by a thin wrapper around `run_cell`; train_s, eval_s and wall_s come from results.parquet):
- start-up, from before Ray starts to the first trial's start: Ray; splits and corpora (the
  teacher on Ray Serve; to the last corpus file's mtime); tokenizer (to its files' mtime); Tune
  until the first trial runs.
- per cell, mean, standard deviation, min and max over the cells:
    outside train + eval     the trial's span - train_s - eval_s
    Train job overhead       wall_s - train_s - eval_s (engine ray_train: Train controller, worker group, process
                             group, imports, data, checkpoints, student export)
    trial outside Train job  span - wall_s (result.json, optimizer-state deletion, Tune reports)
- after the last trial: results.parquet and figures, to the end of run_study.
- the grid: wall (from before Ray starts to the end of run_study; the CLI's Python imports are
  not in it), the trials at once (as launch decides them: the slots; and the most seen running at
  once), the machine's CPUs, and the load average before and after;
    per cell outside train + eval (grid)  ((wall - start-up) x slots - sum(train + eval)) / cells:
                                          also counts the gaps between trials, idle slots and
                                          the time after the last trial
    efficiency                            sum(train + eval) / (wall x slots)
It prints a table and one JSON line. A failed cell is reported as failed (exit 1), never as a number.

Measured 2026-12-02 (session 5), 8 minimal cells, this 2-core machine under heavy load (load
average 6.8 before, 26.8 after), engine ray_train: start-up 42.3 s; per cell outside train + eval
48.7 s (sd 4.5), 48.6 s of it the Train job's own overhead; grid wall 244.2 s.
Measured 2026-12-02 (session 6), both engines, one after the other on an idle machine:
    python bench/cell_overhead.py                      (ray_train; load average 0.08 before)
        per cell outside train + eval 21.3 s (sd 2.2, 18.1-24.7); grid wall 106.5 s
    python bench/cell_overhead.py --engine in_trial    (load average 0.88 before)
        per cell outside train + eval 0.7 s (sd 0.7, 0.3-1.8); grid wall 17.6 s
    python bench/cell_overhead.py --demo --engine in_trial   (load 0.88 before, 2.06 after)
        12 cells: wall 192.7 s, start-up 28.5 s (splits + corpora through Ray Serve 19.5 s),
        per cell outside train + eval 1.0 s, efficiency 79.2%
    python bench/cell_overhead.py --demo --engine ray_train  (right after; load 2.06 before, 3.59 after)
        12 cells: wall 300.5 s, start-up 29.0 s, per cell outside train + eval 18.8 s, efficiency 50.8%
Measured 2026-12-07 (session 7), after the demo renders its teacher in process (`serve: false`)
and starts its largest students first, one after the other:
    python bench/cell_overhead.py --demo --engine in_trial   (load 1.36 before, 1.97 after)
        12 cells: wall 204.8 s, start-up 9.2 s, per cell outside train + eval 1.2 s (sd 0.9),
        efficiency 89.9%
    python bench/cell_overhead.py --demo --engine ray_train  (load 1.68 before, 3.10 after)
        12 cells: wall 398.0 s, start-up 9.5 s, per cell outside train + eval 26.2 s (sd 1.1),
        efficiency 56.6%; the 12 accuracies equal to in_trial's
    python bench/cell_overhead.py --spec specs/svamp-tiny.yaml --engine in_trial   (load 1.12 before)
        24 cells: wall 201.6 s, start-up 11.8 s, per cell outside train + eval 0.9 s (sd 0.7),
        efficiency 84.8%
    python bench/cell_overhead.py --spec specs/svamp-tiny.yaml --engine ray_train  (load 1.72 before, 3.40 after)
        24 cells: wall 582.7 s, start-up 10.9 s, per cell outside train + eval 27.0 s (sd 2.3),
        efficiency 39.6%; the 24 accuracies equal to in_trial's
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.core.cells import Cell  # noqa: E402
from study.core.cluster import on_cluster  # noqa: E402
from study.core.console import configure_logging  # noqa: E402
from study.core.spec import ResourcesSpec, StudySpec, load_spec  # noqa: E402
from study.core.storage import StudyPaths  # noqa: E402
from study.core.storage.files import InputError  # noqa: E402
from study.run.launch import StudyOutcome, init_ray, known_cluster, max_concurrent, run_study  # noqa: E402
from trainables.cell import run_cell  # noqa: E402

DEMO_SPEC = Path(__file__).resolve().parents[1] / "specs" / "demo.yaml"
MIN_CELLS = 8
MINIMAL_SPEC = """\
name: cell-overhead
storage: {storage}
datasets:
  - name: arith
    arith: {{seed: 0, n_train: 64, n_test: 8, ops_min: 2, ops_max: 3, max_value: 20}}
teachers:
  - {{kind: program, name: program}}
granularities: [1]
formats: [cot]
students:
  - {{name: tiny-1l, tiny: {{layers: 1, width: 32, heads: 2}}}}
method: sft
training:
  max_steps: 1
  tokens_per_batch: 512
  seeds: {seeds}
evaluation:
  test_size: 4
  max_new_tokens: 8
  batch_size: 4
resources:
  workers_per_trial: 1
  cpus_per_worker: 1
tokenizer:
  vocab_size: 300
"""


@dataclass(frozen=True)
class CellTiming:
    name: str
    span_s: float  # the trial function's own wall time, start to end
    train_s: float
    eval_s: float
    wall_s: float  # around the cell's Ray Train job (trainables/cell.py)
    started: float  # unix time, for start-up and concurrency
    ended: float
    accuracy: float  # in the JSON: the same cells on another engine must give the same

    @property
    def outside_s(self) -> float:
        return self.span_s - self.train_s - self.eval_s

    @property
    def train_job_overhead_s(self) -> float:
        return self.wall_s - self.train_s - self.eval_s

    @property
    def outside_train_job_s(self) -> float:
        return self.span_s - self.wall_s


@dataclass(frozen=True)
class StartUp:
    ray_s: float
    corpora_s: float  # checks, storage, splits, the teacher on Serve, the corpora
    tokenizer_s: float
    tune_s: float  # from the tokenizer to the first trial's start

    @property
    def total_s(self) -> float:
        return self.ray_s + self.corpora_s + self.tokenizer_s + self.tune_s


def minimal_spec(storage: Path, cells: int) -> StudySpec:
    """N seeds of one minimal cell, loaded from YAML as `cotstudy run` loads a spec."""
    path = storage / "cell-overhead.yaml"
    path.write_text(MINIMAL_SPEC.format(storage=storage / "studies", seeds=list(range(cells))))
    return load_spec(path)


def timed_trainable(timings: Path) -> Callable[[dict], None]:
    """`run_cell`, with the trial's start and end (unix time, comparable with the driver's clock)
    written to timings/<cell_id>.json; Ray pickles this closure by value into the trial process."""

    def timed_run_cell(config: dict) -> None:
        started = time.time()
        try:
            run_cell(config)
        finally:
            cell_id = Cell.model_validate(config["cell"]).cell_id
            (timings / f"{cell_id}.json").write_text(json.dumps({"started": started, "ended": time.time()}))

    return timed_run_cell


def cell_timings(outcome: StudyOutcome, timings: Path) -> list[CellTiming]:
    rows = []
    for row in outcome.results.itertuples():
        span = json.loads((timings / f"{row.cell_id}.json").read_text())
        rows.append(CellTiming(row.name, span["ended"] - span["started"], row.train_s, row.eval_s, row.wall_s,
                               span["started"], span["ended"], row.accuracy))
    return sorted(rows, key=lambda timing: timing.started)


def latest_mtime(folder: Path) -> float:
    return max(path.stat().st_mtime for path in folder.rglob("*") if path.is_file())


def start_up(run_started: float, ray_ready: float, paths: StudyPaths, first_trial: float) -> StartUp:
    """The phases before the first trial, split at the moments their outputs were written."""
    corpora_done = latest_mtime(Path(paths.root) / "corpora")
    tokenizer_done = latest_mtime(Path(paths.tokenizer))
    return StartUp(ray_ready - run_started, corpora_done - ray_ready, tokenizer_done - corpora_done,
                   first_trial - tokenizer_done)


def most_at_once(cells: list[CellTiming]) -> int:
    """The most trials whose spans overlap at one moment."""
    events = sorted([(c.started, 1) for c in cells] + [(c.ended, -1) for c in cells])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def trial_slots(spec: StudySpec) -> int:
    """Trials at once, as study.run.launch decides them for this run."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    limit, _ = max_concurrent(spec.resources, known_cluster(None), nodes, on_cluster())
    return limit


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def report(spec: StudySpec, cells: list[CellTiming], startup: StartUp, wall_s: float, tail_s: float, slots: int,
           loads: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    """`tail_s`: from the last trial's end to the end of run_study (results.parquet, figures)."""
    useful_s = sum(c.train_s + c.eval_s for c in cells)
    grid_outside_s = ((wall_s - startup.total_s) * slots - useful_s) / len(cells)
    efficiency = useful_s / (wall_s * slots)
    figures = {"outside train + eval": spread([c.outside_s for c in cells]),
               "Train job overhead": spread([c.train_job_overhead_s for c in cells]),
               "trial outside Train job": spread([c.outside_train_job_s for c in cells]),
               "train_s": spread([c.train_s for c in cells]), "eval_s": spread([c.eval_s for c in cells])}
    cpus = os.cpu_count()
    ray_cpus = ray.cluster_resources().get("CPU", 0.0)
    print(f"\nstudy {spec.name}: {len(cells)} cells; {cpus} CPUs (Ray: {ray_cpus:g}); trials at once: {slots} "
          f"(most seen running: {most_at_once(cells)}); load average before {loads[0][0]:.2f} "
          f"{loads[0][1]:.2f} {loads[0][2]:.2f}, after {loads[1][0]:.2f} {loads[1][1]:.2f} {loads[1][2]:.2f}")
    print(f"start-up {startup.total_s:.1f}s: Ray {startup.ray_s:.1f}s, splits + corpora {startup.corpora_s:.1f}s, "
          f"tokenizer {startup.tokenizer_s:.1f}s, Tune to the first trial {startup.tune_s:.1f}s; "
          f"after the last trial (results, figures) {tail_s:.1f}s")
    print(f"{'per cell (s)':26} {'mean':>7} {'sd':>6} {'min':>7} {'max':>7}")
    for name, values in figures.items():
        print(f"{name:26} {values['mean']:>7.1f} {values['sd']:>6.1f} {values['min']:>7.1f} {values['max']:>7.1f}")
    print(f"grid: wall {wall_s:.1f}s, sum(train + eval) {useful_s:.1f}s; per cell outside train + eval "
          f"(grid) {grid_outside_s:.1f}s; efficiency {efficiency:.1%} (sum(train + eval) / (wall x {slots} slots))")
    print(json.dumps({
        "study": spec.name, "cells": [asdict(c) for c in cells], "cpus": cpus, "ray_cpus": ray_cpus,
        "slots": slots, "most_at_once": most_at_once(cells), "load_before": loads[0], "load_after": loads[1],
        "start_up": {**asdict(startup), "total_s": startup.total_s}, "per_cell": figures, "wall_s": wall_s,
        "tail_s": tail_s, "train_eval_s": useful_s, "grid_outside_per_cell_s": grid_outside_s, "efficiency": efficiency,
    }))


def measure(spec: StudySpec, timings: Path) -> int:
    load_before = os.getloadavg()
    run_started = time.time()
    init_ray()  # what run_study would start itself, timed apart
    ray_ready = time.time()
    outcome = run_study(spec, trainable=timed_trainable(timings))
    run_ended = time.time()
    failed = [state.cell.name for state in outcome.states if state.state != "done"]
    if failed:
        print(f"cells not done: {failed}; no figures (see cotstudy status {outcome.paths.root})", file=sys.stderr)
        return 1
    cells = cell_timings(outcome, timings)
    startup = start_up(run_started, ray_ready, outcome.paths, cells[0].started)
    tail_s = run_ended - max(c.ended for c in cells)
    report(spec, cells, startup, run_ended - run_started, tail_s, trial_slots(spec), (load_before, os.getloadavg()))
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--cells", type=int, default=MIN_CELLS, help=f"minimal cells (at least {MIN_CELLS})")
    grid.add_argument("--demo", action="store_true", help=f"specs/demo.yaml's grid instead ({DEMO_SPEC})")
    grid.add_argument("--spec", type=Path, help="this spec's grid instead (its storage replaced by a temp dir)")
    parser.add_argument("--engine", choices=["ray_train", "in_trial"],
                        help="resources.engine for every cell (default: the spec's; the minimal cells': ray_train)")
    args = parser.parse_args()
    if args.cells < MIN_CELLS:
        parser.error(f"--cells: at least {MIN_CELLS}, got {args.cells}")
    return args


def main() -> int:
    args = parse_args()
    configure_logging(0)  # cotstudy run's progress lines
    with tempfile.TemporaryDirectory(prefix="cell-overhead-") as folder:
        temp = Path(folder)
        timings = temp / "timings"
        timings.mkdir()
        spec_path = DEMO_SPEC if args.demo else args.spec
        try:
            spec = minimal_spec(temp, args.cells) if spec_path is None else load_spec(spec_path, str(temp / "studies"))
        except InputError as error:  # a bad --spec: one line, nothing run
            print(f"error: {error}", file=sys.stderr)
            return 2
        if args.engine is not None:
            resources = ResourcesSpec.model_validate({**spec.resources.model_dump(), "engine": args.engine})
            spec = spec.model_copy(update={"resources": resources})
        print(f"engine: {spec.resources.engine}")
        try:
            return measure(spec, timings)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
