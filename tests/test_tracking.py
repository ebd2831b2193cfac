"""Experiment tracking (the spec's `tracking:` section): step metrics from the Train loop reach
MLflow (its local file store) and TensorBoard event files through Ray Tune's logger callbacks; a
tracking section is in no cell id; a backend whose package is missing is refused, nothing written."""

from __future__ import annotations

import struct
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import small_spec, write_spec
from study.core.cells import expand_grid
from study.core.spec import parse_spec
from study.run.cli import main

TRACKED = {"every_steps": 2, "min_interval_s": 0, "tensorboard": True}


def test_tracking_is_in_no_cell_id(tmp_path):
    plain = parse_spec(small_spec(tmp_path))
    tracked = parse_spec(small_spec(tmp_path, tracking={**TRACKED, "mlflow": {"experiment": "x"}}))
    assert [c.cell_id for c in expand_grid(tracked)] == [c.cell_id for c in expand_grid(plain)]


def test_an_unknown_tracking_key_names_its_field(tmp_path):
    from study.core.spec import SpecError

    with pytest.raises(SpecError, match=r"tracking\.mlflow\.uri"):
        parse_spec(small_spec(tmp_path, tracking={"mlflow": {"uri": "file:///x"}}))


@pytest.mark.skipif(find_spec("wandb") is not None, reason="wandb is installed: its backend is not missing here")
def test_a_backend_whose_package_is_missing_is_exit_2_and_writes_nothing(tmp_path, capsys):
    storage = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", small_spec(storage, tracking={"wandb": {"project": "p"}}))
    assert main(["run", str(spec)]) == 2
    error = capsys.readouterr().err
    assert "tracking.wandb" in error and "'wandb' package is not installed" in error
    assert not storage.exists(), "nothing written"


def test_step_reports_fall_every_n_steps_at_least_min_interval_apart_and_at_the_last_step():
    import time

    import torch

    from study.core.spec import TrackingSpec
    from trainables.step_reports import step_report_due

    settings, cpu = TrackingSpec(every_steps=2, min_interval_s=5.0), torch.device("cpu")
    just_now, long_ago = time.monotonic(), time.monotonic() - 6.0
    assert [step_report_due(step, 9, settings, long_ago, 1, cpu) for step in range(1, 10)] == [
        False, True, False, True, False, True, False, True, True]
    assert not step_report_due(4, 9, settings, just_now, 1, cpu), "within min_interval_s of the last report"
    assert step_report_due(9, 9, settings, just_now, 1, cpu), "the last step always reports"


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files under `folder`: tag -> [(step, value)]."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        data, offset = events.read_bytes(), 0
        while offset < len(data):  # TFRecord: length (8), its crc (4), the record, its crc (4)
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.mark.ray
def test_step_metrics_of_a_two_cell_run_reach_mlflow_and_tensorboard(tmp_path, ray_local, monkeypatch):
    from mlflow.tracking import MlflowClient

    from study.run.launch import run_study

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    mlruns = f"file://{tmp_path / 'mlruns'}"
    spec = parse_spec(small_spec(tmp_path / "out", tracking={**TRACKED, "mlflow": {"tracking_uri": mlruns}}))
    outcome = run_study(spec)
    assert outcome.count("done") == 2

    client = MlflowClient(mlruns)
    runs = client.search_runs([client.get_experiment_by_name("small").experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(cell.name for cell in expand_grid(spec))
    for run in runs:
        steps = [m.value for m in client.get_metric_history(run.info.run_id, "step")]
        assert {2.0, 4.0, 6.0} <= set(steps), "max_steps 6, every 2 steps"
        for metric in ("loss", "lr", "tokens_per_s"):
            assert len(client.get_metric_history(run.info.run_id, metric)) >= 3, metric
        assert client.get_run(run.info.run_id).data.metrics["accuracy"] >= 0, "the final result too"

    for cell in expand_grid(spec):
        (trial,) = (Path(outcome.paths.tune)).glob(f"{cell.name}-{cell.cell_id}*")
        scalars = tensorboard_scalars(trial)
        assert len(scalars["ray/tune/loss"]) >= 3 and len(scalars["ray/tune/tokens_per_s"]) >= 3
        assert [value for _, value in scalars["ray/tune/step"]][:3] == [2.0, 4.0, 6.0]
