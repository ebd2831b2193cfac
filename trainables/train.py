"""What each Ray Train worker runs for one cell: fine-tune the student, then evaluate it.

Reads top to bottom: setup (tokenizer, corpus, model, optimizer), resume from the run's latest
checkpoint if there is one, train (a checkpoint every epoch and at the end), then rank 0 evaluates
on the test split, writes predictions.parquet and reports the cell's measurements. The budget is
a number of optimizer steps (from epochs or max_steps), never seconds. Each step's examples are
packed into rows with attention kept inside each example (trainables/packing.py), and the loss is
averaged per target token over the whole step, across workers (trainables/step.py).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from study import storage
from study.cells import Cell
from study.corpora import load_corpus, training_rows
from study.datasets import load_split
from study.results import Measurements
from study.spec import ResourcesSpec
from study.storage import StudyPaths
from trainables.accounting import FlopCount, peak_flops
from trainables.data import (
    Example,
    batch_indices,
    encode_corpus,
    mean_target_tokens,
    steps_per_epoch,
    total_steps,
)
from trainables.evaluate import evaluate
from trainables.packing import flatten_for_varlen, plan_packing, step_micro_batches, use_varlen_attention
from trainables.step import TargetLoss, global_sum, target_count, train_step
from trainables.students import build_student, parameter_count, student_tokenizer
from trainables.tokenizer import load_tokenizer

TRAINER_STATE = "trainer_state.pt"


def load_study_tokenizer(paths: StudyPaths, local_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(storage.download_dir(paths.tokenizer, local_dir))


def batch_stream(examples: list[Example], tokens_per_batch: int, seed: int, n_batches: int,
                 examples_per_batch: int | None = None, packed: bool = False) -> list[list[int]]:
    """Enough epochs of shuffled batches, flattened, for n_batches (epoch e shuffles with seed, e)."""
    stream: list[list[int]] = []
    for epoch in itertools.count():
        if len(stream) >= n_batches:
            return stream[:n_batches]
        stream.extend(batch_indices(examples, tokens_per_batch, seed * 100_003 + epoch, examples_per_batch, packed))
    raise AssertionError("unreachable")


def _save_checkpoint(model: PreTrainedModel, optimizer, scheduler, state: dict, directory: Path) -> None:
    model.save_pretrained(directory)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state},
               directory / TRAINER_STATE)


def _restore(model: PreTrainedModel, optimizer, scheduler) -> dict:
    """Load the run's latest checkpoint into model and optimizer; the saved counters, or zeros."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"step": 0, "train_tokens": 0, "train_s": 0.0, "train_flops": 0.0, "loss": float("nan")}
    with checkpoint.as_directory() as directory:
        saved = type(model).from_pretrained(directory)
        model.load_state_dict(saved.state_dict())
        state = torch.load(Path(directory) / TRAINER_STATE, weights_only=False)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    print(f"resumed from checkpoint at step {state['step']}", flush=True)
    return state


def train_and_evaluate(config: dict) -> None:
    cell = Cell.model_validate(config["cell"])
    paths = StudyPaths(config["study_root"])
    resources = ResourcesSpec.model_validate(config["resources"])
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings = cell.train

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = student_tokenizer(cell.student, load_study_tokenizer(paths, Path(scratch) / "tokenizer"))
    corpus = load_corpus(paths, cell.corpus)
    examples, dropped = encode_corpus(tokenizer, cell.corpus.dataset.name, training_rows(cell.corpus, corpus),
                                      settings.max_length)
    corpus_measures = {"dropped_examples": dropped, "teacher_accuracy": float(corpus["correct"].mean()),
                       "mean_rationale_tokens": mean_target_tokens(examples)}
    # a fixed batch is per optimizer step across all workers: each worker takes its share
    worker_examples = -(-settings.examples_per_batch // world) if settings.examples_per_batch else None
    plan = plan_packing(examples, settings.packing, settings.pack_length)
    per_epoch = steps_per_epoch(examples, settings.tokens_per_batch, world, worker_examples, plan.packing)
    n_steps = total_steps(settings.epochs, settings.max_steps, per_epoch)
    stream = batch_stream(examples, settings.tokens_per_batch, cell.seed, n_steps * world, worker_examples, plan.packing)

    # GPU: bf16 autocast over fp32 master weights, fused AdamW, varlen flash attention when packing
    device = ray.train.torch.get_device() if resources.gpus_per_worker > 0 else torch.device("cpu")
    student = build_student(cell.student, tokenizer, settings.max_length, cell.seed).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr_peak, weight_decay=settings.weight_decay,
                                  fused=device.type == "cuda")
    scheduler = get_scheduler(settings.schedule, optimizer, num_warmup_steps=int(settings.warmup_ratio * n_steps),
                              num_training_steps=n_steps)
    state = {"train_flops": 0.0, **_restore(student, optimizer, scheduler)}
    varlen = plan.packing and device.type == "cuda"
    if varlen:
        use_varlen_attention(student)
    loss_module = TargetLoss(student)
    if world > 1:
        loss_module = ray.train.torch.prepare_model(loss_module)
    student.train()
    autocast = torch.bfloat16 if device.type == "cuda" else None
    count_flops = FlopCount.of(student)

    started = last_checkpoint = time.monotonic()
    for step in range(state["step"], n_steps):
        chosen = [examples[i] for i in stream[step * world + rank]]
        micro_batches = step_micro_batches(chosen, plan, tokenizer.pad_token_id, settings.micro_batch_tokens)
        if varlen:
            micro_batches = [flatten_for_varlen(batch, plan.row_length(chosen)) for batch in micro_batches]
        loss = train_step(loss_module, optimizer, scheduler, micro_batches, world, device, autocast)
        lengths = [len(e.input_ids) for e in chosen]
        state["train_tokens"] += int(global_sum(sum(lengths), world, device))
        state["train_flops"] += global_sum(count_flops(lengths, sum(target_count(b) for b in micro_batches)), world, device)
        state.update(step=step + 1, loss=loss)
        if state["step"] % per_epoch == 0 or state["step"] == n_steps:
            state["train_s"] += time.monotonic() - started
            started = time.monotonic()
            if state["step"] < n_steps and _checkpoint_due(last_checkpoint, resources.checkpoint_every_s, world, device):
                _report_checkpoint(student, optimizer, scheduler, state, rank, metrics={})
                last_checkpoint = time.monotonic()

    if varlen:
        student.set_attn_implementation("sdpa")  # generation needs a KV cache and a padding mask
    # Train's result keeps the metrics of the last checkpointed report: the final checkpoint
    # carries the evaluation, so a restart after it only re-evaluates.
    cost = {"peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "mfu": _mfu(state, world, device)}
    measured = _evaluate_rank0(cell, paths, student, tokenizer, state, {**corpus_measures, **cost}) if rank == 0 else {}
    _report_checkpoint(student, optimizer, scheduler, state, rank, metrics=measured)


def _mfu(state: dict, world: int, device: torch.device) -> float | None:
    """Model FLOPs utilization of training, per GPU (trainables/accounting.py); None off a listed GPU."""
    peak = peak_flops(device)
    return state["train_flops"] / (max(state["train_s"], 1e-9) * world * peak) if peak else None


def _checkpoint_due(last_checkpoint: float, every_s: float, world: int, device: torch.device) -> bool:
    """Whether this epoch end should checkpoint; every rank must agree (a report is collective)."""
    due = torch.tensor([float(time.monotonic() - last_checkpoint >= every_s)], device=device)
    if world > 1:
        torch.distributed.all_reduce(due, op=torch.distributed.ReduceOp.MAX)
    return bool(due.item())


def _evaluate_rank0(cell: Cell, paths: StudyPaths, student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    state: dict, corpus_measures: dict) -> dict:
    problems = load_split(cell.corpus.dataset, "test")[: cell.evaluation.test_size]
    evaluation = evaluate(student, tokenizer, cell.corpus.dataset.name, problems,
                          cell.evaluation.max_new_tokens, cell.evaluation.batch_size)
    storage.write_parquet_atomic(paths.cell_predictions(cell.cell_id), evaluation.predictions)
    predictions = evaluation.predictions
    return Measurements(
        student_params=parameter_count(student),
        accuracy=evaluation.accuracy,
        n_test=len(predictions),
        n_correct=int(predictions["correct"].sum()),
        n_unextractable=evaluation.n_unextractable,
        mean_generated_tokens=float(predictions["generated_tokens"].mean()),
        train_tokens=state["train_tokens"],
        train_steps=state["step"],
        train_s=state["train_s"],
        tokens_per_s=state["train_tokens"] / max(state["train_s"], 1e-9),
        final_loss=state["loss"],
        eval_s=evaluation.eval_s,
        **corpus_measures,
    ).model_dump()


def _report_checkpoint(model: PreTrainedModel, optimizer, scheduler, state: dict, rank: int, metrics: dict) -> None:
    progress = {"step": state["step"], "loss": state["loss"], "train_tokens": state["train_tokens"]}
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            _save_checkpoint(model, optimizer, scheduler, state, Path(directory))
            checkpoint = Checkpoint.from_directory(directory)
        ray.train.report({**progress, **metrics}, checkpoint=checkpoint)
