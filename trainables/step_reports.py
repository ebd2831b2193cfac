"""Step reports: what the Train loop reports to Tune between checkpoints, and when (the spec's
`tracking:` section; study/run/tracking.py turns the reports into TensorBoard, MLflow, W&B runs).

Imported by the trial (trainables/cell.py) and by the Train workers (trainables/train.py)."""

from __future__ import annotations

import time

import torch
from torch.optim.lr_scheduler import LRScheduler

from study.core.spec import TrackingSpec
from trainables.checkpoints import Counters


def step_reports_of(config: dict) -> TrackingSpec | None:
    """A trial or Train loop config's step-report settings (trainables.cell.cell_config); None: no
    step reports (also for trials Tune restores from studies begun before they existed, whose
    configs lack the key)."""
    settings = config.get("step_reports")
    return TrackingSpec.model_validate(settings) if settings is not None else None


class StepMetrics:
    """What a step report says (no checkpoint: Train's result keeps the last checkpointed report's
    metrics, so these never replace the cell's measurements): step of total_steps, epoch, loss,
    learning rate, and train tokens per second (every worker's) since the previous report."""

    def __init__(self, step: int, train_tokens: int) -> None:
        self.step, self.train_tokens, self.time = step, train_tokens, time.monotonic()

    def since_last(self, counters: Counters, scheduler: LRScheduler, per_epoch: int,
                   total_steps: int) -> dict[str, float]:
        tokens_per_s = (counters.train_tokens - self.train_tokens) / max(time.monotonic() - self.time, 1e-9)
        return {"step": counters.step, "total_steps": total_steps, "epoch": counters.step / per_epoch,
                "loss": counters.loss, "lr": scheduler.get_last_lr()[0], "tokens_per_s": tokens_per_s,
                "train_tokens": counters.train_tokens}

    def reported(self, counters: Counters) -> None:
        """The report is made: the next one's rate counts from now (not the time it waited)."""
        self.step, self.train_tokens, self.time = counters.step, counters.train_tokens, time.monotonic()


def step_report_due(step: int, n_steps: int, settings: TrackingSpec, last_report: float, world: int,
                    device: torch.device) -> bool:
    """Whether this step reports its metrics: the last step always; else every `every_steps`, once
    `min_interval_s` has passed since the previous report (every rank agrees: a report is collective)."""
    if step == n_steps:
        return True
    return step % settings.every_steps == 0 and interval_passed(last_report, settings.min_interval_s, world, device)


def interval_passed(since: float, every_s: float, world: int, device: torch.device) -> bool:
    """Whether `every_s` seconds have passed since `since` (the last checkpoint or step report),
    as every rank agrees (a report is collective): any rank's yes is everyone's."""
    due = torch.tensor([float(time.monotonic() - since >= every_s)], device=device)
    if world > 1:
        torch.distributed.all_reduce(due, op=torch.distributed.ReduceOp.MAX)
    return bool(due.item())
