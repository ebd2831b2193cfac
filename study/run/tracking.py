"""Experiment tracking: the spec's `tracking:` section as Ray Tune's own logger callbacks.

Each cell is a Tune trial, so each backend gets one run per cell, named after it, with the cell's
step metrics (reported from the Train loop every `tracking.every_steps` steps and forwarded to
Tune by Ray Train's TuneReportCallback, trainables/cell.py) and its final result. Secrets stay
in the backends' own environment variables (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN, ...); nothing
here reads or writes them.
"""

from __future__ import annotations

from importlib.util import find_spec

from ray.tune import Callback

from study.core.spec import StudySpec, TrackingSpec
from study.run.studies import StudyError

# the package each backend needs, and how to install it
PACKAGES = {"tensorboard": ("tensorboardX", "pip install tensorboardX"),
            "mlflow": ("mlflow", "pip install mlflow (or mlflow-skinny)"),
            "wandb": ("wandb", "pip install wandb")}


class TrackingError(StudyError):
    """A tracking backend the spec asks for whose package is not installed; nothing was run."""


def enabled_backends(tracking: TrackingSpec) -> list[str]:
    """The backends the spec turns on, in PACKAGES order."""
    turned_on = {"tensorboard": tracking.tensorboard, "mlflow": tracking.mlflow is not None,
                 "wandb": tracking.wandb is not None}
    return [backend for backend in PACKAGES if turned_on[backend]]


def check_tracking(spec: StudySpec) -> None:
    """Before anything is written: every backend asked for can be imported."""
    for backend in enabled_backends(spec.tracking):
        package, install = PACKAGES[backend]
        if find_spec(package) is None:
            raise TrackingError(f"tracking.{backend}: the '{package}' package is not installed ({install}), "
                                f"or remove tracking.{backend} from the spec")


def tracking_callbacks(spec: StudySpec) -> list[Callback]:
    """Tune logger callbacks for the spec's backends (Tune adds its own JSON and CSV result files,
    and TensorBoard's when tensorboardX is installed, whatever the spec says)."""
    tracking = spec.tracking
    callbacks: list[Callback] = []
    check_tracking(spec)
    if tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=tracking.mlflow.tracking_uri,
                                              experiment_name=tracking.mlflow.experiment or spec.name,
                                              tags={"study": spec.name}))
    if tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        settings = tracking.wandb
        entity = {} if settings.entity is None else {"entity": settings.entity}
        callbacks.append(WandbLoggerCallback(project=settings.project or spec.name,
                                             group=settings.group or spec.name, **entity))
    return callbacks
