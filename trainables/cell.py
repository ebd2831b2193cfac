"""One cell as a Ray Tune function trainable (the Train V2 pattern: Tune runs this function, which
builds and fits a TorchTrainer, evaluates, writes the result, and reports to Tune).

The cell's own result.json decides whether it is done: a finished cell returns at once, whatever
Tune's state says (after a killed driver, Tune relaunches trials that had finished).
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

import torch
from ray import tune
from transformers import AutoModelForCausalLM

from study import storage
from study.cells import Cell
from study.datasets import load_split
from study.results import CellResult, read_cell_result, write_cell_result
from study.spec import ResourcesSpec
from study.storage import StudyPaths
from trainables.evaluate import Evaluation, evaluate
from trainables.students import parameter_count, student_tokenizer
from trainables.train import TrainOutcome, fit_cell, load_study_tokenizer

REPORTED_METRICS = ("accuracy", "n_test", "train_tokens", "train_s", "eval_s")


def cell_config(cell: Cell, paths: StudyPaths, resources: ResourcesSpec) -> dict:
    """The only dict in the system: Tune's param_space entry for one cell."""
    return {"cell": cell.model_dump(mode="json"), "study_root": paths.root,
            "resources": resources.model_dump(mode="json")}


def run_cell(config: dict) -> None:
    cell = Cell.model_validate(config["cell"])
    paths = StudyPaths(config["study_root"])
    resources = ResourcesSpec.model_validate(config["resources"])
    if storage.exists(paths.cell_result(cell.cell_id)):
        result = read_cell_result(paths, cell.cell_id)
        tune.report({**_metrics(result), "skipped": True})
        return
    try:
        result = train_and_evaluate(cell, paths, resources)
    except Exception:
        storage.write_text_atomic(paths.cell_error(cell.cell_id), traceback.format_exc())
        raise
    tune.report({**_metrics(result), "skipped": False})


def _metrics(result: CellResult) -> dict:
    return {name: getattr(result, name) for name in REPORTED_METRICS}


def train_and_evaluate(cell: Cell, paths: StudyPaths, resources: ResourcesSpec) -> CellResult:
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))
    outcome = fit_cell(cell, paths, resources)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = student_tokenizer(cell.student, load_study_tokenizer(paths, Path(scratch) / "tokenizer"))
        with outcome.checkpoint.as_directory() as checkpoint_dir:
            model = AutoModelForCausalLM.from_pretrained(checkpoint_dir)
    problems = load_split(cell.corpus.dataset, "test")[: cell.evaluation.test_size]
    evaluation = evaluate(model, tokenizer, cell.corpus.dataset.name, problems,
                          cell.evaluation.max_new_tokens, cell.evaluation.batch_size)
    storage.write_parquet_atomic(paths.cell_predictions(cell.cell_id), evaluation.predictions)
    result = _describe(cell, model, outcome, evaluation)
    write_cell_result(paths, result)  # last: its presence marks the cell done
    return result


def _describe(cell: Cell, model: torch.nn.Module, outcome: TrainOutcome, evaluation: Evaluation) -> CellResult:
    predictions = evaluation.predictions
    return CellResult.describe(
        cell,
        student_params=parameter_count(model),
        accuracy=evaluation.accuracy,
        n_test=len(predictions),
        n_correct=int(predictions["correct"].sum()),
        n_unextractable=evaluation.n_unextractable,
        mean_generated_tokens=float(predictions["generated_tokens"].mean()),
        train_tokens=outcome.train_tokens,
        train_steps=outcome.train_steps,
        train_s=outcome.train_s,
        tokens_per_s=outcome.train_tokens / max(outcome.train_s, 1e-9),
        final_loss=outcome.final_loss,
        eval_s=evaluation.eval_s,
    )
