"""One cell as a Ray Tune function trainable (the Train V2 pattern: Tune runs this function, which
builds and fits a TorchTrainer and reports the outcome to Tune).

The cell's own result.json decides whether it is done: a finished cell returns at once, whatever
Tune's state says (after a killed driver, Tune relaunches trials that had finished). The Train
worker trains, evaluates and writes predictions; this function writes result.json, last, and then
deletes the optimizer state of the cell's checkpoints (AdamW's moments, twice the student's size):
a cell with a result never trains again, and its final checkpoint keeps the trained student.

This module stays light on purpose: the Tune trial and the Train controller processes import it,
and neither needs transformers; only the Train workers import `trainables.train`, and the trial
itself when the cell trains in it (resources.engine in_trial: trainables/sessions.py).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from ray import tune
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from study.core import storage
from study.core.cells import Cell
from study.core.results import CellResult, Measurements, read_cell_result, write_cell_result
from study.core.spec import ResourcesSpec, TrackingSpec
from study.core.storage import OPTIMIZER_STATE_FILE, StudyPaths
from trainables.step_reports import step_reports_of

REPORTED_METRICS = ("accuracy", "n_test", "train_tokens", "train_s", "eval_s")


def cell_config(cell: Cell | dict, paths: StudyPaths, resources: ResourcesSpec,
                step_reports: TrackingSpec | None = None) -> dict:
    """The only dict in the system: a trial's config (Tune's param_space, with `cell` a grid
    search over cells) and the Train loop config of one cell. `run_cell` rebuilds the types.
    `step_reports`: the spec's tracking settings when the Train loop reports step metrics to Tune
    (tracking.every_steps set), else None; in no id."""
    return {"cell": cell.model_dump(mode="json") if isinstance(cell, Cell) else cell,
            "study_root": paths.root, "resources": resources.model_dump(mode="json"),
            "step_reports": step_reports.model_dump(mode="json") if step_reports is not None else None}


def run_cell(config: dict) -> None:
    cell = Cell.model_validate(config["cell"])
    paths = StudyPaths(config["study_root"])
    resources = ResourcesSpec.model_validate(config["resources"])
    step_reports = step_reports_of(config)
    if storage.exists(paths.cell_result(cell.cell_id)):
        tune.report({**_metrics(read_cell_result(paths, cell.cell_id)), "skipped": True})
        return
    # While an attempt runs, its marker says so: a cell tried again after a failure is pending,
    # not failed, though the last attempt's error.txt stays (the traceback of what was retried).
    storage.write_text_atomic(paths.cell_attempt(cell.cell_id), time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    started = time.monotonic()
    try:
        measured = fit_cell(cell, paths, resources, step_reports=step_reports)
        result = CellResult.describe(cell, measured, resources, paths.cell_model(cell.cell_id),
                                     wall_s=time.monotonic() - started)
        write_cell_result(paths, result)  # last: its presence marks the cell done
        delete_optimizer_state(paths, cell.cell_id)
    except Exception:
        storage.write_text_atomic(paths.cell_error(cell.cell_id), traceback.format_exc())
        raise
    finally:
        storage.delete_file(paths.cell_attempt(cell.cell_id))
    tune.report({**_metrics(result), "skipped": False})


def delete_optimizer_state(paths: StudyPaths, cell_id: str) -> list[str]:
    """Delete the optimizer state files of a finished cell's checkpoints; the deleted locations."""
    found = storage.find_files(paths.cell_checkpoints(cell_id), OPTIMIZER_STATE_FILE)
    for location in found:
        storage.delete_file(location)
    return found


def _metrics(result: CellResult) -> dict:
    return {name: getattr(result, name) for name in REPORTED_METRICS}


def train_loop_per_worker(config: dict) -> None:
    from trainables.train import train_and_evaluate  # heavy (transformers): workers only

    train_and_evaluate(config)


def fit_cell(cell: Cell, paths: StudyPaths, resources: ResourcesSpec,
             loop_per_worker: Callable[[dict], None] = train_loop_per_worker,
             step_reports: TrackingSpec | None = None) -> Measurements:
    """Train and evaluate the cell where `resources.engine` says (trainables/sessions.py); a rerun
    resumes from its latest checkpoint. With `step_reports` (inside a Tune trial only), every
    report of the loop, step metrics included, reaches Tune and so its logger callbacks (tracking)."""
    if resources.engine == "in_trial":
        return fit_cell_in_trial(cell, paths, resources, step_reports)
    return fit_cell_on_ray_train(cell, paths, resources, loop_per_worker, step_reports)


def fit_cell_in_trial(cell: Cell, paths: StudyPaths, resources: ResourcesSpec,
                      step_reports: TrackingSpec | None = None) -> Measurements:
    """The cell's training loop in this process (engine in_trial); its last checkpoint's metrics."""
    from trainables.sessions import InTrialSession  # light, but the loop below imports transformers
    from trainables.train import train_and_evaluate

    session = InTrialSession(paths, cell.cell_id, forward_to_tune=step_reports is not None)
    measured = train_and_evaluate(cell_config(cell, paths, resources, step_reports), session)
    return Measurements.model_validate({name: measured[name] for name in Measurements.model_fields})


def fit_cell_on_ray_train(cell: Cell, paths: StudyPaths, resources: ResourcesSpec,
                          loop_per_worker: Callable[[dict], None] = train_loop_per_worker,
                          step_reports: TrackingSpec | None = None) -> Measurements:
    """Run the cell's Ray Train job; a rerun (same run name) resumes from its latest checkpoint.
    With `step_reports`, every `ray.train.report` of the workers is forwarded to Tune."""
    forward_to_tune = [] if step_reports is None else [TuneReportCallback()]
    trainer = TorchTrainer(
        loop_per_worker,
        train_loop_config=cell_config(cell, paths, resources, step_reports),
        torch_config=TorchConfig(backend="nccl" if resources.gpus_per_worker else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.workers_per_trial,
            use_gpu=resources.gpus_per_worker > 0,
            resources_per_worker=resources.per_worker,
        ),
        run_config=RunConfig(name="train", storage_path=paths.cell_dir(cell.cell_id),
                             checkpoint_config=CheckpointConfig(num_to_keep=1), callbacks=forward_to_tune),
    )
    metrics = trainer.fit().metrics
    return Measurements.model_validate({name: metrics[name] for name in Measurements.model_fields})
