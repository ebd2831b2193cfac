"""Where a cell's training loop runs (`resources.engine`), as the loop in trainables/train.py sees it:
its rank and world, the run's latest checkpoint, and a report of metrics with or without a new one.

- `RayTrainSession` (engine `ray_train`): the loop runs in Ray Train workers; Train keeps the
  checkpoints (`checkpoint_<time>/` under the cell's `train/` folder), restarts a failed worker
  group from the latest, and forwards reports to Tune when the trial asks (TuneReportCallback).
- `InTrialSession` (engine `in_trial`: one worker, no GPU): the loop runs in the Tune trial's own
  process, so a cell pays no Train controller, worker group or process group, and a reused trial
  actor keeps torch and transformers imported from one cell to the next. It writes the same
  `checkpoint_<time>/` folders into the same `train/` folder itself, keeps the last one (Train's
  `num_to_keep=1`), and names the last complete one in `train/in_trial_checkpoint.txt`, written
  after the folder, so a trial killed while writing resumes from the one before. A failed trial is
  tried again by Tune (`resources.trial_attempts`), and the new attempt resumes from it. Step
  reports go to Tune directly, exactly those Train would have forwarded.

The same cell gives the same loss curve and predictions on both engines (tests/test_engines.py):
a world of one runs the same code on the same seeds. The two engines' checkpoints are not read
by each other: a cell whose engine changed between attempts starts its training again.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

from study.core import storage
from study.core.storage import StudyPaths

CHECKPOINT_PREFIX = "checkpoint_"  # Ray Train's folder names, so every reader lists both engines' alike
IN_TRIAL_LATEST = "in_trial_checkpoint.txt"


class TrainSession(Protocol):
    rank: int
    world: int

    def device(self, use_gpu: bool) -> torch.device: ...

    def latest_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The run's latest checkpoint as a local folder while the context lasts; None: none yet."""
        ...

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        """Collective: metrics (every rank), with rank 0's checkpoint folder when it saves one."""
        ...


class RayTrainSession:
    """Inside a Ray Train worker (trainables/cell.py's TorchTrainer)."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    def device(self, use_gpu: bool) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device() if use_gpu else torch.device("cpu")

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield Path(directory)

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        import ray.train
        from ray.train import Checkpoint

        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)


class InTrialSession:
    """In the Tune trial's own process: rank 0 of a world of one, on the CPU."""

    rank = 0
    world = 1

    def __init__(self, paths: StudyPaths, cell_id: str, forward_to_tune: bool) -> None:
        self.folder = paths.cell_checkpoints(cell_id)
        self.forward_to_tune = forward_to_tune
        self.last_metrics: dict = {}  # of the last report with a checkpoint (what Train's result keeps)

    def device(self, use_gpu: bool) -> torch.device:
        if use_gpu:
            raise ValueError("resources.engine in_trial trains on the CPU; a GPU cell runs on ray_train")
        return torch.device("cpu")

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        name = self._latest_name()
        if name is None:
            yield None
            return
        with tempfile.TemporaryDirectory() as scratch:
            yield storage.download_dir(storage.join(self.folder, name), Path(scratch) / name)

    def _latest_name(self) -> str | None:
        pointer = storage.join(self.folder, IN_TRIAL_LATEST)
        return storage.read_text(pointer).strip() if storage.exists(pointer) else None

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        if checkpoint is not None:
            self._save(checkpoint)
            self.last_metrics = metrics
        if self.forward_to_tune:
            from ray import tune

            tune.report(metrics)

    def _save(self, checkpoint: Path) -> None:
        now = time.time_ns()
        name = f"{CHECKPOINT_PREFIX}{time.strftime('%Y-%m-%d_%H-%M-%S', time.gmtime(now // 10**9))}.{now % 10**9:09d}"
        storage.upload_dir(checkpoint, storage.join(self.folder, name))
        storage.write_text_atomic(storage.join(self.folder, IN_TRIAL_LATEST), name)  # after: it names complete ones
        for older in storage.list_dirs(self.folder, prefix=CHECKPOINT_PREFIX):
            if storage.base_name(older) != name:
                storage.delete_dir(older)
