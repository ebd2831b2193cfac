"""Launching and resuming a study: the one place that knows Tune, trainables and analysis together.

run:    spec -> storage checks -> Ray -> corpora (teachers on Serve) -> tokenizer -> Tune grid
        (one trial per cell; kd teacher cells first, in a grid of their own, then the stored
        teacher log-probs of offline kd) -> results.parquet -> figures.
resume: the same from a study folder's frozen spec.yaml, restoring the Tune experiment
        (errored trials re-run); cells with a result.json are never run again. It reads only the
        study folder: the data sets' splits are stored there at `run` (study.core.stored_splits),
        the corpora too; the data folder (--data-dir) is needed only to rebuild a missing one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import ray
from ray import tune

from analysis.figures import plot_all
from study.core import storage
from study.core.cells import Cell, CorpusKey, corpus_keys, expand_grid, teacher_cells
from study.core.cluster import (AUTOSCALER_CONFIG, ClusterConfig, any_gpu_cluster, load_cluster, on_cluster, placement,
                                trials_at_once)
from study.core.corpora import missing_corpora
from study.core.datasets import dataset_info, load_split
from study.core.console import Progress
from study.core.results import CellState, cell_states, collect_results, set_aside_corrupt_results
from study.core.spec import KdMethod, ResourcesSpec, StudySpec
from study.core.storage import StudyPaths
from study.core.stored_splits import missing_splits, store_splits
from study.run.planning import check_fit, largest_students_first
from study.run.studies import StudyError, check_study_folder, open_study, prepare_storage, study_lock
from study.run.tracking import check_tracking, tracking_callbacks
from study.teachers.generate import build_corpora
from study.teachers.registry import kind_of
from trainables.cell import cell_config, run_cell
from trainables.evaluate import check_beam_search
from trainables.kd import check_kd_teachers, ensure_teacher_logits
from trainables.students import check_students, tiny_templates
from trainables.tokenizer import ensure_study_tokenizer

log = logging.getLogger(__name__)

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


def init_ray() -> None:
    """Join RAY_ADDRESS's cluster if set, else start a local one with this machine's CPUs and the
    driver resource; a cluster whose head lacks that resource is refused."""
    if not ray.is_initialized():
        local = {} if on_cluster() else {"resources": {DRIVER_RESOURCE: 1}}
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": RAY_ENV_VARS}, **local)
    if DRIVER_RESOURCE not in ray.cluster_resources():
        raise ClusterTooSmall(f"the Ray cluster has no '{DRIVER_RESOURCE}' resource, which pins trial drivers "
                              f"to its head: start the head with ray start --head --resources "
                              f"'{{\"{DRIVER_RESOURCE}\": 1}}' (cluster.yaml's head node type declares it)")


def known_cluster(given: ClusterConfig | None) -> ClusterConfig | None:
    """The cluster's launcher config: the one given (--cluster), else, on a cluster, the
    autoscaler's own copy on the head when this driver runs there (`ray job submit` does)."""
    if given is not None or not on_cluster():
        return given
    autoscaler_config = Path(AUTOSCALER_CONFIG).expanduser()
    return load_cluster(autoscaler_config) if autoscaler_config.is_file() else None


def check_node_types(spec: StudySpec, cluster: ClusterConfig | None) -> None:
    """A trial whose Train workers fit no node type of the cluster's config would wait forever:
    refused before Ray starts (`cotstudy plan --cluster` shows the same fit per node type)."""
    if cluster is None:
        return
    refusal = placement(spec.resources.per_worker, spec.resources.workers_per_trial, cluster).refusal()
    if refusal is not None:
        raise ClusterTooSmall(refusal)


def check_cluster_now(spec: StudySpec, cluster: ClusterConfig | None) -> None:
    """On the running Ray, before anything is written: storage every node reaches, and Train
    workers that fit the cluster as it is now (unless a cluster config says what it may grow to)."""
    if on_cluster():
        check_storage_is_shared(spec.storage, len(_alive_nodes()), cluster)
    if cluster is None or not on_cluster():  # a local Ray is this machine, whatever --cluster says
        check_trial_fits(spec.resources, ray.cluster_resources(), autoscaling=on_cluster())


def check_storage_is_shared(location: str, alive_nodes: int, cluster: ClusterConfig | None) -> None:
    """A local folder is this machine's only: on a cluster of several nodes (or one whose
    autoscaler may add some) the Train workers elsewhere would write where nobody reads."""
    grows = cluster is not None and any(t.max_workers > 0 for t in cluster.node_types if not t.head)
    if storage.is_uri(location) or (alive_nodes <= 1 and not grows):
        return
    size = f"{alive_nodes} nodes" + (f", and {cluster.source} may add more" if grows else "")
    raise ClusterTooSmall(f"storage: '{location}' is a local folder, but the Ray cluster at RAY_ADDRESS has {size}: "
                          "give a URI every node reaches (--storage s3://bucket/prefix, gs://...), or file:///path "
                          "for a folder every node mounts at that path")


def _alive_nodes() -> list[dict[str, float]]:
    """Resources of each node of the cluster now."""
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


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
    log.warning(f"warning: {message}; trials wait until the autoscaler adds nodes")


def max_concurrent(resources: ResourcesSpec, cluster: ClusterConfig | None, nodes: list[dict[str, float]],
                   joined: bool) -> tuple[int, str]:
    """How many trials run at once, and why: resources.max_concurrent_trials when set; else the
    trials whose Train workers the cluster holds now or once its autoscaler has started every node
    it may (a cluster config known), else those its nodes hold now. A trial itself holds no CPU,
    so the head's CPUs are no limit."""
    if resources.max_concurrent_trials is not None:
        return resources.max_concurrent_trials, "resources.max_concurrent_trials"
    now = trials_at_once(resources.per_worker, resources.workers_per_trial, nodes)
    if cluster is not None and joined:
        largest = placement(resources.per_worker, resources.workers_per_trial, cluster).trials_at_once
        return max(now, largest, 1), f"the Train workers its node types hold at most ({cluster.source})"
    if joined:  # no autoscaler config known: the cluster is what it is now (every trial driver would
        # otherwise start on the head at once, each with its own worker processes)
        return max(now, 1), "the Train workers its nodes hold now; no cluster config known, --cluster FILE for one that grows"
    return max(now, 1), "the Train workers this machine's Ray holds"


def _trial_name(trial: tune.experiment.Trial) -> str:
    return Cell.model_validate(trial.config["cell"]).name


def _trial_dirname(trial: tune.experiment.Trial) -> str:
    cell = Cell.model_validate(trial.config["cell"])
    return f"{cell.name}-{cell.cell_id}"


class CellProgress(tune.Callback):
    """One line per trial as it starts, finishes or fails; while it trains, its steps (from the
    Train loop's step reports, tracking.every_steps): a bar on a terminal, lines with -v."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self.training: dict[str, Progress] = {}  # trial id -> its steps

    def on_trial_result(self, iteration: int, trials: list, trial: tune.experiment.Trial, result: dict,
                        **info) -> None:
        if "total_steps" not in result:  # a checkpoint's or the cell's final report
            return
        steps = self.training.setdefault(
            trial.trial_id, Progress(f"train {_trial_name(trial)}", result["total_steps"], "steps", log, logging.DEBUG))
        steps.advance(result["step"] - steps.done, note=f"loss {result['loss']:.3f}")
        if result["step"] == result["total_steps"]:
            steps.finish("trained; evaluating")
            del self.training[trial.trial_id]

    def _close(self, trial: tune.experiment.Trial) -> None:
        steps = self.training.pop(trial.trial_id, None)
        if steps is not None:
            steps.finish("stopped")

    def on_trial_start(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        log.info(f"  start  {_trial_name(trial)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        self._close(trial)
        self.finished += 1
        metrics = trial.last_result
        what = ("already done" if metrics.get("skipped") else
                f"train {metrics['train_s']:.0f}s, eval {metrics['eval_s']:.0f}s")
        log.info(f"[{self.finished}/{self.total}] {_trial_name(trial)}: accuracy {metrics['accuracy']:.3f} "
                 f"on {metrics['n_test']} ({what})")

    def on_trial_error(self, iteration: int, trials: list, trial: tune.experiment.Trial, **info) -> None:
        self._close(trial)
        self.finished += 1
        log.info(f"[{self.finished}/{self.total}] {_trial_name(trial)}: FAILED (see 'cotstudy status')")


def _trainable_with_resources(trainable: Trainable, resources: ResourcesSpec) -> tune.trainable.Trainable:
    """On ray_train the trial only drives: Ray Train's workers hold the CPUs/GPUs, so the trial asks
    for no CPU (else two trials would hold both CPUs of a 2-core machine and their Train workers
    could never start), and for a sliver of the head's driver resource, which keeps it on the head.
    In_trial the trial is the cell's one worker: it holds that worker's CPUs, on any node."""
    if resources.engine == "in_trial":
        return tune.with_resources(trainable, {"CPU": resources.cpus_per_worker})
    return tune.with_resources(trainable, {"CPU": 0, DRIVER_RESOURCE: DRIVER_SHARE})


def _new_tuner(spec: StudySpec, paths: StudyPaths, cells: list[Cell], trainable: Trainable,
               cluster: ClusterConfig | None) -> tune.Tuner:
    limit, why = max_concurrent(spec.resources, cluster, _alive_nodes(), on_cluster())
    log.info(f"trials at once: up to {limit} ({why})")
    ordered = largest_students_first(spec, cells)
    return tune.Tuner(
        _trainable_with_resources(trainable, spec.resources),
        param_space=cell_config(tune.grid_search([c.model_dump(mode="json") for c in ordered]), paths, spec.resources,
                                spec.tracking if spec.tracking.every_steps is not None else None),
        tune_config=tune.TuneConfig(max_concurrent_trials=limit, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=storage.base_name(paths.tune),
            storage_path=paths.root,
            failure_config=tune.FailureConfig(max_failures=spec.resources.trial_attempts - 1),
            callbacks=[CellProgress(len(cells)), *tracking_callbacks(spec)],
            verbose=0,
        ),
    )


def _prepare_inputs(spec: StudySpec, paths: StudyPaths) -> None:
    keys = corpus_keys(spec)
    build_corpora(spec, paths, keys)
    ensure_study_tokenizer(paths, keys, spec.tokenizer.vocab_size, tiny_templates(spec))


def _checks_before_writing(spec: StudySpec, cluster: ClusterConfig | None,
                           fit_on: ClusterConfig | None = None) -> ClusterConfig | None:
    """What can refuse a study before its folder is touched; returns the cluster config that
    sets placement and concurrency (see `known_cluster`). `fit_on`: node types a GPU study's
    cells must fit in memory (study.run.planning.check_fit; `resume` does not size them again).
    A cluster is joined here (cheap, and local storage must be refused before it is written); a
    local Ray starts only after the storage lock has proved the storage writable (`_start_ray`)."""
    check_tracking(spec)  # a backend whose package is missing
    cluster = known_cluster(cluster)
    check_node_types(spec, cluster)
    if fit_on is not None:
        check_fit(spec, fit_on)  # before the students are looked up (a hub id can take seconds)
    check_students(spec)  # an unloadable student or LoRA target stops the run before it writes
    check_kd_teachers(spec)
    check_beam_search(spec)
    if on_cluster():
        _start_ray(spec, cluster)
    return cluster


def _start_ray(spec: StudySpec, cluster: ClusterConfig | None) -> None:
    init_ray()
    check_cluster_now(spec, cluster)


def run_study(spec: StudySpec, trainable: Trainable = run_cell, break_lock: bool = False,
              cluster: ClusterConfig | None = None, fit_on: ClusterConfig | None = None) -> StudyOutcome:
    """One driver per study: a second `run`/`resume` of it refuses (study.run.studies.study_lock).
    `cluster`: the cluster's launcher config (--cluster), for placement and concurrency; `fit_on`:
    the nodes to fit cells' memory on instead (--gpu). A GPU study's cells must each fit a node type
    (memory, GPUs, CPUs) of `fit_on`, else of the cluster, else of some listed GPU."""
    cluster = _checks_before_writing(spec, cluster, fit_on=fit_on or cluster or any_gpu_cluster())
    paths, _ = check_study_folder(spec)  # a foreign folder or a changed spec: refused before the lock is written
    with study_lock(paths, "run", break_lock):
        if not on_cluster():  # a local Ray starts once the lock has found the storage writable
            _start_ray(spec, cluster)
        paths, cells = prepare_storage(spec)  # after the last check that can refuse the run
        log.info(f"study {spec.name}: {len(cells)} cells -> {paths.root}")
        set_aside_corrupt_results(paths, cells)
        store_splits(paths, spec.datasets)  # from here on nothing reads the data folder
        _prepare_inputs(spec, paths)
        run_teachers_first(spec, paths, cells, trainable, cluster)
        return finish_study(paths, cells)


def resume_study(study_dir: str, trainable: Trainable = run_cell, break_lock: bool = False,
                 cluster: ClusterConfig | None = None, data_dir: str | None = None) -> StudyOutcome:
    """Finish a study from its folder alone; `data_dir` (--data-dir) only rebuilds inputs missing
    from it (see `open_study`)."""
    spec, paths = open_study(study_dir, data_dir)
    cells = expand_grid(spec)
    if any(s.state != "done" for s in cell_states(paths, cells)):
        check_rebuildable(spec, paths, corpus_keys(spec))
        cluster = _checks_before_writing(spec, cluster)
    with study_lock(paths, "resume", break_lock):
        set_aside_corrupt_results(paths, cells)
        pending = [s for s in cell_states(paths, cells) if s.state != "done"]
        log.info(f"study {spec.name}: {len(cells) - len(pending)} of {len(cells)} cells done; resuming")
        if pending:
            store_splits(paths, spec.datasets)  # only those missing (from --data-dir), before Ray
            if not on_cluster():
                _start_ray(spec, cluster)
            _prepare_inputs(spec, paths)
            # a study with teacher cells ran several grids into one Tune folder: order, not Tune, decides
            restored = not teacher_cells(cells) and tune.Tuner.can_restore(paths.tune)
            if restored:
                tune.Tuner.restore(paths.tune, _trainable_with_resources(trainable, spec.resources),
                                   resume_unfinished=True, resume_errored=True).fit()
            # Tune reruns only trials it saw unfinished or errored; a cell whose result was set aside
            # (corrupted) finished in Tune's eyes, so whatever is still pending runs in a new grid.
            left = [s.cell for s in cell_states(paths, cells)
                    if s.state == "pending" or (s.state == "failed" and not restored)]
            if left:
                run_teachers_first(spec, paths, left, trainable, cluster)
        return finish_study(paths, cells)


def check_rebuildable(spec: StudySpec, paths: StudyPaths, keys: list[CorpusKey]) -> None:
    """Before Ray starts: inputs missing from the study folder that only the data folder can give
    back (the splits of a data set read from files, the corpora of an imported teacher) while no
    data folder is known raise StudyError naming them and the fix."""
    if spec.data_dir is not None:
        return
    lost = [f"the splits of '{d.name}'" for d in missing_splits(paths, spec.datasets)
            if d.hub is None and not dataset_info(d.name).generated]
    lost += [f"corpus {key.name}" for key in missing_corpora(paths, keys)
             if key.teacher is not None and kind_of(key.teacher).source_of(key.teacher) == "imported"]
    if lost:
        raise StudyError(f"{paths.root}: not in the study folder: {', '.join(lost)} (a study run before its data was "
                         "stored with it, or files deleted); rebuild them from the data set's files: "
                         f"cotstudy resume {paths.root} --data-dir DIR")


def run_teachers_first(spec: StudySpec, paths: StudyPaths, cells: list[Cell], trainable: Trainable,
                       cluster: ClusterConfig | None = None) -> None:
    """Run `cells` so that every kd cell's teacher cell (`cell:`) is done before it starts: the
    teacher cells among them in a grid of their own, then the stored teacher log-probs the others
    need (offline kd, `_compute_teacher_logits`), then the others in one grid. A kd cell whose
    teacher cell did not finish is left pending, with a note (resume runs both, in this order).
    Without teacher cells or offline kd this is one grid of every cell, as before kd."""
    teacher_ids = {cell.cell_id for cell in teacher_cells(expand_grid(spec))}
    first = [cell for cell in cells if cell.cell_id in teacher_ids]
    if first:
        log.info(f"teacher cells first: {[cell.name for cell in first]}")
        _new_tuner(spec, paths, first, trainable, cluster).fit()
    done = {state.cell.cell_id for state in cell_states(paths, teacher_cells(expand_grid(spec))) if state.state == "done"}
    rest = [cell for cell in cells if cell.cell_id not in teacher_ids]
    ready = [cell for cell in rest if cell.teacher_cell is None or cell.teacher_cell.cell_id in done]
    for cell in rest:
        if cell not in ready:
            log.info(f"  wait   {cell.name}: its teacher cell {cell.teacher_cell.name} is not done")
    _compute_teacher_logits(spec, paths, ready)
    if ready:
        _new_tuner(spec, paths, ready, trainable, cluster).fit()


def _compute_teacher_logits(spec: StudySpec, paths: StudyPaths, cells: list[Cell]) -> None:
    """The offline kd cells' teacher top-k, each file once, as one Ray task with one Train
    worker's resources (a GPU when workers have one)."""
    offline = [cell for cell in cells if isinstance(cell.method, KdMethod) and cell.method.mode == "offline"]
    if not offline:
        return
    resources = spec.resources
    task = ray.remote(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker)(_teacher_logits_task)
    passes = ray.get(task.remote(offline, paths, resources.gpus_per_worker > 0))
    log.info(f"teacher log-probs: {passes} teacher forward passes for {len(offline)} kd cells")


def _teacher_logits_task(cells: list[Cell], paths: StudyPaths, use_gpu: bool) -> int:
    import torch

    return ensure_teacher_logits(cells, paths, torch.device("cuda" if use_gpu else "cpu"))


def finish_study(paths: StudyPaths, cells: list[Cell]) -> StudyOutcome:
    states = cell_states(paths, cells)
    results = collect_results(paths, states)
    figures = draw_figures(paths, results) if not results.empty else []
    return StudyOutcome(paths=paths, states=states, results=results, figures=figures)


def draw_figures(paths: StudyPaths, results: pd.DataFrame) -> list[str]:
    """Figures go to <study>/figures (for remote storage drawn locally and uploaded)."""
    return storage.produce_at(paths.figures, lambda folder: plot_all(results, folder))


def serve_teacher(spec: StudySpec, teacher_name: str, host: str | None = None) -> None:
    """Serve one teacher of a spec on Ray Serve until interrupted (Ctrl-C), so several studies
    can use it as an `openai` teacher at the printed URL. `host`: the address other machines reach
    this node by (study.teachers.endpoint.serve_host; default: the node's address on a cluster)."""
    from study.teachers.endpoint import start_serve, stop_teacher
    from study.teachers.generate import reach_teacher

    teacher = spec.teacher(teacher_name)
    problems = [p for dataset in spec.datasets for split in ("train", "test") for p in load_split(dataset, split)]
    init_ray()
    endpoint = reach_teacher(teacher, problems, start_serve(host=host))
    print(f"teacher {teacher.name} ({teacher.kind}) answers at {endpoint.base_url}"
          f"{f' as model {endpoint.model!r}' if endpoint.model else ''}\n"
          f"use it from a study as: {{kind: openai, name: {teacher.name}, base_url: {endpoint.base_url}, "
          f"model: {endpoint.model or '<NAME/L<level>/<format>>'}}}\nCtrl-C stops it.", flush=True)
    if on_cluster() and urlsplit(endpoint.base_url).hostname in ("127.0.0.1", "localhost"):
        print("note: other nodes cannot reach this URL: the cluster's Serve listens on 127.0.0.1 only; "
              "stop it (serve shutdown) and start this again to serve on the node's address", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the teacher", flush=True)
    finally:
        stop_teacher(endpoint)  # its own application only: other studies' teachers keep running
