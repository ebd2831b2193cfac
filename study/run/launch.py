"""Launching and resuming a study: the one place that knows Tune, trainables and analysis together.

run:    spec -> storage checks -> Ray -> corpora (teachers on Serve) -> tokenizer -> Tune grid
        (one trial per cell; kd teacher cells first, in a grid of their own, then the stored
        teacher log-probs of offline kd) -> results.parquet -> figures.
resume: the same from a study folder's frozen spec.yaml, restoring the Tune experiment
        (errored trials re-run); cells with a result.json are never run again.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from analysis.figures import plot_all
from study.core import storage
from study.core.cells import Cell, corpus_keys, expand_grid, teacher_cells
from study.core.results import CellState, cell_states, collect_results, set_aside_corrupt_results
from study.core.spec import KdMethod, ResourcesSpec, StudySpec
from study.core.storage import StudyPaths
from study.run.studies import StudyError, open_study, prepare_storage, study_lock
from study.teachers.generate import build_corpora
from trainables.cell import cell_config, run_cell
from trainables.evaluate import check_beam_search
from trainables.kd import check_kd_teachers, ensure_teacher_logits
from trainables.students import check_students
from trainables.tokenizer import ensure_study_tokenizer

Trainable = Callable[[dict], None]
RAY_ENV_VARS = {"TOKENIZERS_PARALLELISM": "false", "RAY_TRAIN_V2_ENABLED": "1"}
# A custom resource that only the head node declares (cluster.yaml's head node type; a local
# `ray.init` here). Each trial driver asks for a sliver of it, so drivers always run on the head,
# never on a (spot) GPU node that may go away with them; their Train workers go anywhere.
DRIVER_RESOURCE = "cotstudy_driver"
DRIVER_SHARE = 0.001


@dataclass(frozen=True)
class StudyOutcome:
    paths: StudyPaths
    states: list[CellState]
    results: pd.DataFrame
    figures: list[str]

    def count(self, state: str) -> int:
        return sum(1 for s in self.states if s.state == state)


class ClusterTooSmall(StudyError):
    """A trial the cluster cannot place (more Train workers than it has, or no head to pin its driver
    to); nothing was run."""


def init_ray(resources: ResourcesSpec | None = None) -> None:
    """Join RAY_ADDRESS's cluster if set, else start a local one with this machine's CPUs; then
    check that one trial's Train workers (when given) fit in it."""
    if not ray.is_initialized():
        local = {} if "RAY_ADDRESS" in os.environ else {"resources": {DRIVER_RESOURCE: 1}}
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": RAY_ENV_VARS}, **local)
    if DRIVER_RESOURCE not in ray.cluster_resources():
        raise ClusterTooSmall(f"the Ray cluster has no '{DRIVER_RESOURCE}' resource, which pins trial drivers "
                              f"to its head: start the head with ray start --head --resources "
                              f"'{{\"{DRIVER_RESOURCE}\": 1}}' (cluster.yaml's head node type declares it)")
    if resources is not None:
        check_trial_fits(resources, ray.cluster_resources(), autoscaling="RAY_ADDRESS" in os.environ)


def check_trial_fits(resources: ResourcesSpec, cluster: dict[str, float], autoscaling: bool) -> None:
    """Ray would wait forever for workers that cannot be placed: say so before anything starts.
    A cluster joined through RAY_ADDRESS may grow (its autoscaler): there it is a warning."""
    wanted = resources.per_trial
    short = [f"{wanted[kind]:g} {kind}s (workers_per_trial={resources.workers_per_trial} x "
             f"{kind.lower()}s_per_worker={resources.per_worker[kind]:g})"
             for kind in wanted if wanted[kind] > cluster.get(kind, 0.0)]
    if not short:
        return
    have = ", ".join(f"{cluster.get(kind, 0.0):g} {kind}s" for kind in wanted)
    message = f"resources: one trial needs {' and '.join(short)}, but the cluster has {have}"
    if not autoscaling:
        raise ClusterTooSmall(message + "; lower resources.workers_per_trial or add nodes")
    print(f"warning: {message}; trials wait until the autoscaler adds nodes", flush=True)


def _trial_name(trial: tune.experiment.Trial) -> str:
    return Cell.model_validate(trial.config["cell"]).name


def _trial_dirname(trial: tune.experiment.Trial) -> str:
    cell = Cell.model_validate(trial.config["cell"])
    return f"{cell.name}-{cell.cell_id}"


class CellProgress(tune.Callback):
    """One line per trial as it starts, finishes or fails."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0

    def on_trial_start(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        print(f"  start  {_trial_name(trial)}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        self.finished += 1
        metrics = trial.last_result
        what = ("already done" if metrics.get("skipped") else
                f"train {metrics['train_s']:.0f}s, eval {metrics['eval_s']:.0f}s")
        print(f"[{self.finished}/{self.total}] {_trial_name(trial)}: accuracy {metrics['accuracy']:.3f} "
              f"on {metrics['n_test']} ({what})", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        self.finished += 1
        print(f"[{self.finished}/{self.total}] {_trial_name(trial)}: FAILED (see 'cotstudy status')", flush=True)


def _trainable_with_resources(trainable: Trainable) -> tune.trainable.Trainable:
    """The trial only drives: Ray Train's workers hold the CPUs/GPUs, so the trial asks for no CPU
    (else two trials would hold both CPUs of a 2-core machine and their Train workers could never
    start), and for a sliver of the head's driver resource, which keeps it on the head."""
    return tune.with_resources(trainable, {"CPU": 0, DRIVER_RESOURCE: DRIVER_SHARE})


def _max_concurrent(spec: StudySpec) -> int:
    if spec.resources.max_concurrent_trials is not None:
        return spec.resources.max_concurrent_trials
    return max(1, int(ray.cluster_resources().get("CPU", 1) // spec.resources.per_trial["CPU"]))


def _new_tuner(spec: StudySpec, paths: StudyPaths, cells: list[Cell], trainable: Trainable) -> tune.Tuner:
    return tune.Tuner(
        _trainable_with_resources(trainable),
        param_space=cell_config(tune.grid_search([c.model_dump(mode="json") for c in cells]), paths, spec.resources),
        tune_config=tune.TuneConfig(max_concurrent_trials=_max_concurrent(spec), reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=storage.base_name(paths.tune),
            storage_path=paths.root,
            failure_config=tune.FailureConfig(max_failures=spec.resources.trial_attempts - 1),
            callbacks=[CellProgress(len(cells))],
            verbose=0,
        ),
    )


def _prepare_inputs(spec: StudySpec, paths: StudyPaths) -> None:
    keys = corpus_keys(spec)
    build_corpora(spec, paths, keys)
    ensure_study_tokenizer(paths, keys, spec.tokenizer.vocab_size)


def run_study(spec: StudySpec, trainable: Trainable = run_cell, break_lock: bool = False) -> StudyOutcome:
    """One driver per study: a second `run`/`resume` of it refuses (study.run.studies.study_lock)."""
    check_students(spec)  # first: an unloadable student or LoRA target stops the run before it writes
    check_kd_teachers(spec)
    check_beam_search(spec)
    with study_lock(StudyPaths.of(spec.storage, spec.name), "run", break_lock):
        paths, cells = prepare_storage(spec)
        print(f"study {spec.name}: {len(cells)} cells -> {paths.root}", flush=True)
        set_aside_corrupt_results(paths, cells)
        init_ray(spec.resources)
        _prepare_inputs(spec, paths)
        run_teachers_first(spec, paths, cells, trainable)
        return finish_study(paths, cells)


def resume_study(study_dir: str, trainable: Trainable = run_cell, break_lock: bool = False) -> StudyOutcome:
    spec, paths = open_study(study_dir)
    with study_lock(paths, "resume", break_lock):
        cells = expand_grid(spec)
        set_aside_corrupt_results(paths, cells)
        pending = [s for s in cell_states(paths, cells) if s.state != "done"]
        print(f"study {spec.name}: {len(cells) - len(pending)} of {len(cells)} cells done; resuming", flush=True)
        if pending:
            check_students(spec)
            check_kd_teachers(spec)
            check_beam_search(spec)
            init_ray(spec.resources)
            _prepare_inputs(spec, paths)
            # a study with teacher cells ran several grids into one Tune folder: order, not Tune, decides
            restored = not teacher_cells(cells) and tune.Tuner.can_restore(paths.tune)
            if restored:
                tune.Tuner.restore(paths.tune, _trainable_with_resources(trainable),
                                   resume_unfinished=True, resume_errored=True).fit()
            # Tune reruns only trials it saw unfinished or errored; a cell whose result was set aside
            # (corrupted) finished in Tune's eyes, so whatever is still pending runs in a new grid.
            left = [s.cell for s in cell_states(paths, cells)
                    if s.state == "pending" or (s.state == "failed" and not restored)]
            if left:
                run_teachers_first(spec, paths, left, trainable)
        return finish_study(paths, cells)


def run_teachers_first(spec: StudySpec, paths: StudyPaths, cells: list[Cell], trainable: Trainable) -> None:
    """Run `cells` so that every kd cell's teacher cell (`cell:`) is done before it starts: the
    teacher cells among them in a grid of their own, then the stored teacher log-probs the others
    need (offline kd, `_compute_teacher_logits`), then the others in one grid. A kd cell whose
    teacher cell did not finish is left pending, with a note (resume runs both, in this order).
    Without teacher cells or offline kd this is one grid of every cell, as before kd."""
    teacher_ids = {cell.cell_id for cell in teacher_cells(expand_grid(spec))}
    first = [cell for cell in cells if cell.cell_id in teacher_ids]
    if first:
        print(f"teacher cells first: {[cell.name for cell in first]}", flush=True)
        _new_tuner(spec, paths, first, trainable).fit()
    done = {state.cell.cell_id for state in cell_states(paths, teacher_cells(expand_grid(spec))) if state.state == "done"}
    rest = [cell for cell in cells if cell.cell_id not in teacher_ids]
    ready = [cell for cell in rest if cell.teacher_cell is None or cell.teacher_cell.cell_id in done]
    for cell in rest:
        if cell not in ready:
            print(f"  wait   {cell.name}: its teacher cell {cell.teacher_cell.name} is not done", flush=True)
    _compute_teacher_logits(spec, paths, ready)
    if ready:
        _new_tuner(spec, paths, ready, trainable).fit()


def _compute_teacher_logits(spec: StudySpec, paths: StudyPaths, cells: list[Cell]) -> None:
    """The offline kd cells' teacher top-k, each file once, as one Ray task with one Train
    worker's resources (a GPU when workers have one)."""
    offline = [cell for cell in cells if isinstance(cell.method, KdMethod) and cell.method.mode == "offline"]
    if not offline:
        return
    resources = spec.resources
    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker)(_teacher_logits_task)
    passes = ray.get(task.remote(offline, paths, resources.gpus_per_worker > 0))
    print(f"teacher log-probs: {passes} teacher forward passes for {len(offline)} kd cells", flush=True)


def _teacher_logits_task(cells: list[Cell], paths: StudyPaths, use_gpu: bool) -> int:
    import torch

    return ensure_teacher_logits(cells, paths, torch.device("cuda" if use_gpu else "cpu"))


def finish_study(paths: StudyPaths, cells: list[Cell]) -> StudyOutcome:
    states = cell_states(paths, cells)
    results = collect_results(paths, states)
    figures = draw_figures(paths, results) if not results.empty else []
    return StudyOutcome(paths=paths, states=states, results=results, figures=figures)


def draw_figures(paths: StudyPaths, results: pd.DataFrame) -> list[str]:
    """Figures go to <study>/figures; for remote storage they are drawn locally and uploaded."""
    if not storage.is_uri(paths.figures):
        return [str(p) for p in plot_all(results, Path(paths.figures))]
    with tempfile.TemporaryDirectory() as scratch:
        drawn = plot_all(results, Path(scratch))
        storage.upload_dir(Path(scratch), paths.figures)
    return [storage.join(paths.figures, p.name) for p in drawn]


def serve_teacher(spec: StudySpec, teacher_name: str) -> None:
    """Serve one teacher of a spec on Ray Serve until interrupted (Ctrl-C), so several studies
    can use it as an `openai` teacher at the printed URL."""
    from study.teachers.endpoint import start_serve, stop_teacher
    from study.teachers.generate import reach_teacher

    teacher = spec.teacher(teacher_name)
    init_ray()
    endpoint = reach_teacher(teacher, spec, start_serve())
    print(f"teacher {teacher.name} ({teacher.kind}) answers at {endpoint.base_url}"
          f"{f' as model {endpoint.model!r}' if endpoint.model else ''}\n"
          f"use it from a study as: {{kind: openai, name: {teacher.name}, base_url: {endpoint.base_url}, "
          f"model: {endpoint.model or '<NAME/L<level>/<format>>'}}}\nCtrl-C stops it.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the teacher", flush=True)
    finally:
        stop_teacher(endpoint)  # its own application only: other studies' teachers keep running
