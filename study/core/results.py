"""Cell results: a typed row per finished cell, the state of every cell, and results.parquet.

A cell is done exactly when its result.json exists (written last, atomically, with a checksum)
and matches its checksum; failed when it has an error.txt, no result and no attempt running (a
cell tried again is pending while it runs); pending otherwise.
Tune's own state never decides what is done.
"""

from __future__ import annotations

import json
import logging
import types
import typing
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

import pandas as pd
from pydantic import ValidationError

from study.core import storage
from study.core.cells import Cell
from study.core.spec import Frozen, ResourcesSpec
from study.core.storage import StudyPaths

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("cotstudy", "torch", "transformers", "ray")


class Measurements(Frozen):
    """What training and evaluation of one cell measured (reported by the Train worker)."""

    student_params: int
    accuracy: float  # the project's scorer (study/core/datasets/answers.py)
    # the paper's answer rules on the same outputs (study/core/datasets/paper_answers.py); None in
    # results written before it was recorded
    accuracy_paper: float | None = None
    n_test: int
    n_correct: int
    n_unextractable: int
    mean_generated_tokens: float
    train_tokens: int
    train_steps: int
    train_s: float
    tokens_per_s: float
    final_loss: float
    dropped_examples: int  # corpus rows longer than max_length, left out
    truncated_examples: int = 0  # corpus rows cut to max_length (overlong: truncate)
    # trained on packed rows; False: padded (training.packing: false, or a student whose attention
    # cannot keep packed documents apart, e.g. BLOOM); None in results written before it was recorded
    packed: bool | None = None
    eval_s: float
    eval_engine: str = "transformers"  # transformers | vllm (EvalSpec.engine, resolved on the worker)
    teacher_accuracy: float  # the corpus's correct rate against gold (train split)
    mean_rationale_tokens: float  # mean target length in the student's tokens
    peak_memory_gb: float | None = None  # peak GPU memory allocated in training (rank 0); None on CPU
    mfu: float | None = None  # training model FLOPs utilization per GPU (trainables/accounting.py); None off a listed GPU


class CellResult(Measurements):
    """One result row: the cell's own fields plus its measurements; every column of results.parquet."""

    cell_id: str
    name: str
    dataset: str
    teacher: str | None
    granularity: int | None
    format: str
    student: str
    method: str  # the method's label: sft, socratic (two-model), socratic-unified
    seed: int
    eval_profile: str = "robust"  # evaluation.profile: how the outputs were decoded (robust before it existed)
    corpus_id: str
    gpu_s: float  # GPU-seconds: training on every worker's GPUs, then evaluation on one worker's
    # the trained student in Hugging Face format (cells/<id>/model, where the study was when the cell
    # finished); None in results written before students were saved
    model_path: str | None = None
    # the cell's whole trial, measured around its Ray Train job (worker start-up, data, training,
    # checkpoints, evaluation); None in results written before it was recorded
    wall_s: float | None = None
    versions: dict[str, str]

    @classmethod
    def describe(cls, cell: Cell, measured: Measurements, resources: ResourcesSpec,
                 model_path: str | None = None, wall_s: float | None = None) -> CellResult:
        """The row of a cell; `wall_s`: its Ray Train job's wall time, as trainables.cell.run_cell
        measures it (None where nobody measured it)."""
        key = cell.corpus
        gpu_s = measured.train_s * resources.per_trial["GPU"] + measured.eval_s * resources.per_worker["GPU"]
        return cls(cell_id=cell.cell_id, name=cell.name, dataset=key.dataset.name, teacher=key.teacher_name,
                   granularity=key.granularity, format=key.format, student=cell.student.name, method=cell.method.label,
                   seed=cell.seed, eval_profile=cell.evaluation.profile, corpus_id=key.corpus_id, gpu_s=gpu_s,
                   model_path=model_path, wall_s=wall_s, versions=package_versions(), **measured.model_dump())


PANDAS_DTYPES: dict[type, str] = {str: "string", int: "int64", float: "float64", bool: "bool"}


def column_dtypes() -> dict[str, str]:
    """The pandas dtype of every results.parquet column, from CellResult's own annotations (an
    optional int is the nullable "Int64", an optional bool the nullable "boolean"); the flattened `<package>_version` columns are strings."""
    dtypes = {}
    for name, field in CellResult.model_fields.items():
        union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
        kinds = set(typing.get_args(field.annotation)) if union else {field.annotation}
        optional = type(None) in kinds
        (kind,) = kinds - {type(None)}
        if typing.get_origin(kind) is dict:
            continue  # versions: flattened into <package>_version columns (_flat)
        nullable = {int: "Int64", bool: "boolean"}
        dtypes[name] = nullable[kind] if optional and kind in nullable else PANDAS_DTYPES[kind]
    return dtypes


def package_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in VERSIONED_PACKAGES}


def write_cell_result(paths: StudyPaths, result: CellResult) -> None:
    storage.write_bytes_checked(paths.cell_result(result.cell_id), result.model_dump_json(indent=2).encode())


def read_cell_result(paths: StudyPaths, cell_id: str) -> CellResult:
    """The cell's result, verified against its checksum (storage.ChecksumError names the file)."""
    location = paths.cell_result(cell_id)
    try:
        return CellResult.model_validate_json(storage.read_bytes_checked(location))
    except (ValidationError, json.JSONDecodeError) as error:
        raise ValueError(f"{location}: not a valid cell result: {error}") from None


def unusable_result(paths: StudyPaths, cell_id: str) -> str | None:
    """Why a cell's existing result.json cannot be used (fails its checksum, or is no valid
    result: e.g. a `"final_loss": null` written before non-finite losses were refused); None
    when it is good."""
    try:
        read_cell_result(paths, cell_id)
    except ValueError as error:  # ChecksumError too
        return str(error)
    return None


def set_aside_corrupt_results(paths: StudyPaths, cells: list[Cell]) -> list[str]:
    """Before a run or resume: a result.json that fails its checksum or is no valid result is
    reported and moved aside, so its cell runs again. Returns the cell ids set aside."""
    corrupt = []
    for cell in cells:
        location = paths.cell_result(cell.cell_id)
        if storage.exists(location) and (error := unusable_result(paths, cell.cell_id)) is not None:
            moved = storage.quarantine(location)
            log.warning(f"cell {cell.name}: {error}; moved to {moved}, the cell will run again")
            corrupt.append(cell.cell_id)
    return corrupt


@dataclass(frozen=True)
class CellState:
    cell: Cell
    state: Literal["done", "failed", "pending"]
    error: str | None = None


def cell_states(paths: StudyPaths, cells: list[Cell]) -> list[CellState]:
    """A cell is done only if its result.json matches its checksum and is a valid result; any
    other is pending (with the reason as its note) until `set_aside_corrupt_results` and a rerun,
    so results.parquet is always readable."""
    states = []
    for cell in cells:
        location = paths.cell_result(cell.cell_id)
        if storage.exists(location):
            error = unusable_result(paths, cell.cell_id)
            states.append(CellState(cell, "done") if error is None else CellState(cell, "pending", str(error)))
        elif storage.exists(paths.cell_error(cell.cell_id)) and not storage.exists(paths.cell_attempt(cell.cell_id)):
            states.append(CellState(cell, "failed", storage.read_text(paths.cell_error(cell.cell_id))))
        else:
            states.append(CellState(cell, "pending"))
    return states


def collect_results(paths: StudyPaths, states: list[CellState]) -> pd.DataFrame:
    """Rebuild results.parquet from the finished cells' result.json (one row per cell id)."""
    rows = [read_cell_result(paths, s.cell.cell_id) for s in states if s.state == "done"]
    frame = pd.DataFrame([_flat(r) for r in rows])
    if rows:
        storage.write_parquet_atomic(paths.results, frame)
    return frame


def _flat(result: CellResult) -> dict:
    row = result.model_dump(exclude={"versions"})
    row.update({f"{name}_version": version for name, version in result.versions.items()})
    return row
