"""Launching and resuming a study: the one place that knows Tune, trainables and analysis together.

run:    spec -> storage checks -> Ray -> corpora (teachers on Serve) -> tokenizer -> Tune grid
        (one trial per cell) -> results.parquet -> figures.
resume: the same from a study folder's frozen spec.yaml, restoring the Tune experiment
        (errored trials re-run); cells with a result.json are never run again.
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
from study.core.cells import Cell, corpus_keys, expand_grid
from study.core.cluster import AUTOSCALER_CONFIG, ClusterConfig, load_cluster, on_cluster, placement, trials_at_once
from study.core.console import Progress
from study.core.results import CellState, cell_states, collect_results, set_aside_corrupt_results
from study.core.spec import ResourcesSpec, StudySpec
from study.core.storage import StudyPaths
from study.run.studies import StudyError, open_study, prepare_storage, study_lock
from study.run.tracking import check_tracking, tracking_callbacks
from study.teachers.generate import build_corpora
from trainables.cell import cell_config, run_cell
from trainables.evaluate import check_beam_search
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
                   joined: bool) -> tuple[int | None, str]:
    """How many trials run at once, and why: resources.max_concurrent_trials when set; else the
    trials whose Train workers the cluster holds now or once its autoscaler has started every node
    it may (a cluster config known); on a cluster whose config is unknown, None: Tune starts
    every trial and a trial's workers wait until they can be placed. A trial itself holds no
    CPU, so the head's CPUs are no limit."""
    if resources.max_concurrent_trials is not None:
        return resources.max_concurrent_trials, "resources.max_concurrent_trials"
    now = trials_at_once(resources.per_worker, resources.workers_per_trial, nodes)
    if cluster is not None and joined:
        largest = placement(resources.per_worker, resources.workers_per_trial, cluster).trials_at_once
        return max(now, largest, 1), f"the Train workers its node types hold at most ({cluster.source})"
    if joined:
        return None, "left to Ray: no cluster config known (--cluster cluster.yaml sets a limit)"
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


def _trainable_with_resources(trainable: Trainable) -> tune.trainable.Trainable:
    """The trial only drives: Ray Train's workers hold the CPUs/GPUs, so the trial asks for no CPU
    (else two trials would hold both CPUs of a 2-core machine and their Train workers could never
    start), and for a sliver of the head's driver resource, which keeps it on the head."""
    return tune.with_resources(trainable, {"CPU": 0, DRIVER_RESOURCE: DRIVER_SHARE})


def _new_tuner(spec: StudySpec, paths: StudyPaths, cells: list[Cell], trainable: Trainable,
               cluster: ClusterConfig | None) -> tune.Tuner:
    limit, why = max_concurrent(spec.resources, cluster, _alive_nodes(), on_cluster())
    log.info(f"trials at once: {'no limit' if limit is None else f'up to {limit}'} ({why})")
    return tune.Tuner(
        _trainable_with_resources(trainable),
        param_space=cell_config(tune.grid_search([c.model_dump(mode="json") for c in cells]), paths, spec.resources,
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


def _checks_before_writing(spec: StudySpec, cluster: ClusterConfig | None) -> ClusterConfig | None:
    """What can refuse a study before its folder is touched; returns the cluster config that
    sets placement and concurrency (see `known_cluster`). A cluster is joined here (cheap, and
    local storage must be refused before it is written); a local Ray starts only after the
    storage lock has proved the storage writable (`_start_ray`)."""
    check_tracking(spec)  # a backend whose package is missing
    cluster = known_cluster(cluster)
    check_node_types(spec, cluster)
    check_students(spec)  # an unloadable student or LoRA target stops the run before it writes
    check_beam_search(spec)
    if on_cluster():
        _start_ray(spec, cluster)
    return cluster


def _start_ray(spec: StudySpec, cluster: ClusterConfig | None) -> None:
    init_ray()
    check_cluster_now(spec, cluster)


def run_study(spec: StudySpec, trainable: Trainable = run_cell, break_lock: bool = False,
              cluster: ClusterConfig | None = None) -> StudyOutcome:
    """One driver per study: a second `run`/`resume` of it refuses (study.run.studies.study_lock).
    `cluster`: the cluster's launcher config (--cluster), for placement and concurrency."""
    cluster = _checks_before_writing(spec, cluster)
    with study_lock(StudyPaths.of(spec.storage, spec.name), "run", break_lock):
        paths, cells = prepare_storage(spec)
        log.info(f"study {spec.name}: {len(cells)} cells -> {paths.root}")
        set_aside_corrupt_results(paths, cells)
        if not on_cluster():  # a local Ray starts once the lock has found the storage writable
            _start_ray(spec, cluster)
        _prepare_inputs(spec, paths)
        _new_tuner(spec, paths, cells, trainable, cluster).fit()
        return finish_study(paths, cells)


def resume_study(study_dir: str, trainable: Trainable = run_cell, break_lock: bool = False,
                 cluster: ClusterConfig | None = None) -> StudyOutcome:
    spec, paths = open_study(study_dir)
    cells = expand_grid(spec)
    if any(s.state != "done" for s in cell_states(paths, cells)):
        cluster = _checks_before_writing(spec, cluster)
    with study_lock(paths, "resume", break_lock):
        set_aside_corrupt_results(paths, cells)
        pending = [s for s in cell_states(paths, cells) if s.state != "done"]
        log.info(f"study {spec.name}: {len(cells) - len(pending)} of {len(cells)} cells done; resuming")
        if pending:
            if not on_cluster():
                _start_ray(spec, cluster)
            _prepare_inputs(spec, paths)
            restored = tune.Tuner.can_restore(paths.tune)
            if restored:
                tune.Tuner.restore(paths.tune, _trainable_with_resources(trainable),
                                   resume_unfinished=True, resume_errored=True).fit()
            # Tune reruns only trials it saw unfinished or errored; a cell whose result was set aside
            # (corrupted) finished in Tune's eyes, so whatever is still pending runs in a new grid.
            left = [s.cell for s in cell_states(paths, cells)
                    if s.state == "pending" or (s.state == "failed" and not restored)]
            if left:
                _new_tuner(spec, paths, left, trainable, cluster).fit()
        return finish_study(paths, cells)


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
    init_ray()
    endpoint = reach_teacher(teacher, spec, start_serve(host=host))
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
