"""Fault injection for tests: a trainable whose first attempt at one cell fails inside the cell's
own pipeline (so the real error handling writes error.txt and Tune marks the trial errored)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trainables.cell
from study.core.cells import Cell

FAILING_FORMAT = "answer_only"


def _injected_failure(*args: object, **kwargs: object) -> None:
    raise RuntimeError("injected failure on the first attempt")


def _run_failing(config: dict) -> None:
    """Run the cell's real pipeline with its fit step replaced by a failure."""
    original = trainables.cell.fit_cell
    trainables.cell.fit_cell = _injected_failure
    try:
        trainables.cell.run_cell(config)
    finally:
        trainables.cell.fit_cell = original


def fail_first_attempt(config: dict) -> None:
    _fail_first_attempt_of(FAILING_FORMAT, config)


def fail_first_attempt_of(fmt: str) -> Callable[[dict], None]:
    """The same trainable, failing the first attempt at the cells of another format."""
    return lambda config: _fail_first_attempt_of(fmt, config)


def _fail_first_attempt_of(fmt: str, config: dict) -> None:
    cell = Cell.model_validate(config["cell"])
    marker = Path(config["study_root"]) / f"attempted-{cell.cell_id}"
    first_attempt = cell.corpus.format == fmt and not marker.exists()
    marker.touch()
    if first_attempt:
        _run_failing(config)
    else:
        trainables.cell.run_cell(config)


def fail_always(config: dict) -> None:
    """The answer-only cell fails on every attempt (each attempt leaves a line in a counter file)."""
    cell = Cell.model_validate(config["cell"])
    if cell.corpus.format != FAILING_FORMAT:
        trainables.cell.run_cell(config)
        return
    with open(Path(config["study_root"]) / f"attempts-{cell.cell_id}", "a") as counter:
        counter.write("attempt\n")
    _run_failing(config)


def failing_train_loop(fail_at_call: int, records: Path):
    """A Train loop whose first attempt fails at its `fail_at_call`-th optimizer step on every
    worker; each attempt records its step calls (records/calls-<rank>-<attempt>)."""

    def loop(config: dict) -> None:
        import ray.train

        import trainables.train as train

        rank = ray.train.get_context().get_world_rank()
        attempt = len(list(records.glob(f"calls-{rank}-*")))
        calls = records / f"calls-{rank}-{attempt}"
        calls.touch()
        real_step = train.train_step

        def counted_step(*args: object, **kwargs: object) -> float:
            with open(calls, "a") as log:
                log.write("step\n")
            if attempt == 0 and len(calls.read_text().splitlines()) == fail_at_call:
                raise RuntimeError(f"injected failure at optimizer step {fail_at_call}")
            return real_step(*args, **kwargs)

        train.train_step = counted_step
        try:
            train.train_and_evaluate(config)
        finally:
            train.train_step = real_step

    return loop


TEACHER_STUDENT = "teacher"


def fail_teacher_first_attempt(config: dict) -> None:
    """The sft cells of student `teacher` (a kd `cell:` teacher in tests) fail on their first
    attempt; every attempt at any cell leaves its name in <study>/order.txt, in start order."""
    cell = Cell.model_validate(config["cell"])
    root = Path(config["study_root"])
    with open(root / "order.txt", "a") as order:
        order.write(f"{cell.name}\n")
    marker = root / f"attempted-{cell.cell_id}"
    first_attempt = cell.method.kind == "sft" and cell.student.name == TEACHER_STUDENT and not marker.exists()
    marker.touch()
    if first_attempt:
        _run_failing(config)
    else:
        trainables.cell.run_cell(config)
