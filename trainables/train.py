"""Fine-tuning one cell's student with Ray Train (TorchTrainer; gloo on CPU, 1+ workers).

The per-worker loop reads top to bottom: setup (tokenizer, corpus, model, optimizer), resume from
the run's latest checkpoint if there is one, then steps; a checkpoint is reported every epoch and
at the end. The budget is a number of optimizer steps (from epochs or max_steps), never seconds.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray.train
import torch
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import PreTrainedModel, get_scheduler

from study import storage
from study.cells import Cell
from study.corpora import load_corpus
from study.spec import ResourcesSpec
from study.storage import StudyPaths
from trainables.data import Example, batch_indices, collate, encode_corpus, steps_per_epoch, total_steps
from trainables.students import build_student, student_tokenizer
from trainables.tokenizer import load_tokenizer

TRAINER_STATE = "trainer_state.pt"


@dataclass(frozen=True)
class TrainOutcome:
    checkpoint: Checkpoint
    train_tokens: int
    train_steps: int
    train_s: float
    final_loss: float
    dropped_examples: int


def load_study_tokenizer(paths: StudyPaths, local_dir: Path):
    return load_tokenizer(storage.download_dir(paths.tokenizer, local_dir))


def batch_stream(examples: list[Example], tokens_per_batch: int, seed: int, n_batches: int) -> list[list[int]]:
    """Enough epochs of shuffled batches, flattened, for n_batches (epoch e shuffles with seed, e)."""
    stream: list[list[int]] = []
    for epoch in itertools.count():
        if len(stream) >= n_batches:
            return stream[:n_batches]
        stream.extend(batch_indices(examples, tokens_per_batch, seed=seed * 100_003 + epoch))
    raise AssertionError("unreachable")


def _save_checkpoint(model: PreTrainedModel, optimizer, scheduler, state: dict, directory: Path) -> None:
    model.save_pretrained(directory)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state},
               directory / TRAINER_STATE)


def _restore(model: PreTrainedModel, optimizer, scheduler) -> dict:
    """Load the run's latest checkpoint into model and optimizer; the saved counters, or zeros."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"step": 0, "train_tokens": 0, "train_s": 0.0}
    with checkpoint.as_directory() as directory:
        saved = type(model).from_pretrained(directory)
        model.load_state_dict(saved.state_dict())
        state = torch.load(Path(directory) / TRAINER_STATE, weights_only=False)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    print(f"resumed from checkpoint at step {state['step']}", flush=True)
    return state


def train_loop_per_worker(config: dict) -> None:
    cell = Cell.model_validate(config["cell"])
    paths = StudyPaths(config["study_root"])
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings = cell.train

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = student_tokenizer(cell.student, load_study_tokenizer(paths, Path(scratch) / "tokenizer"))
    examples, dropped = encode_corpus(tokenizer, cell.corpus.dataset.name, load_corpus(paths, cell.corpus),
                                      settings.max_length)
    per_epoch = steps_per_epoch(examples, settings.tokens_per_batch, world)
    n_steps = total_steps(settings.epochs, settings.max_steps, per_epoch)
    stream = batch_stream(examples, settings.tokens_per_batch, cell.seed, n_steps * world)

    student = build_student(cell.student, tokenizer, settings.max_length, cell.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr_peak, weight_decay=settings.weight_decay)
    scheduler = get_scheduler(settings.schedule, optimizer, num_warmup_steps=int(settings.warmup_ratio * n_steps),
                              num_training_steps=n_steps)
    state = _restore(student, optimizer, scheduler)
    model = ray.train.torch.prepare_model(student) if world > 1 else student
    model.train()

    started = time.monotonic()
    loss_value = float("nan")
    for step in range(state["step"], n_steps):
        batch = collate([examples[i] for i in stream[step * world + rank]], tokenizer.pad_token_id)
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        state["train_tokens"] += int(batch["attention_mask"].sum()) * world
        done = step + 1
        if done % per_epoch == 0 or done == n_steps:
            state.update(step=done, train_s=state["train_s"] + time.monotonic() - started)
            started = time.monotonic()
            metrics = {"step": done, "loss": loss_value, "train_tokens": state["train_tokens"],
                       "train_s": state["train_s"], "dropped_examples": dropped, "epoch": done / per_epoch}
            _report(student, optimizer, scheduler, state, metrics, rank)


def _report(model: PreTrainedModel, optimizer, scheduler, state: dict, metrics: dict, rank: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            _save_checkpoint(model, optimizer, scheduler, state, Path(directory))
            checkpoint = Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def fit_cell(cell: Cell, paths: StudyPaths, resources: ResourcesSpec) -> TrainOutcome:
    """Run the cell's Ray Train job; a rerun with the same name resumes from its checkpoint."""
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cell": cell.model_dump(mode="json"), "study_root": paths.root,
                           "cpus_per_worker": resources.cpus_per_worker},
        torch_config=TorchConfig(backend="nccl" if resources.gpus_per_worker else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.workers_per_trial,
            use_gpu=resources.gpus_per_worker > 0,
            resources_per_worker={"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker},
        ),
        run_config=RunConfig(name="train", storage_path=paths.cell_dir(cell.cell_id),
                             checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    result = trainer.fit()
    metrics = result.metrics
    return TrainOutcome(
        checkpoint=result.checkpoint,
        train_tokens=int(metrics["train_tokens"]),
        train_steps=int(metrics["step"]),
        train_s=float(metrics["train_s"]),
        final_loss=float(metrics["loss"]),
        dropped_examples=int(metrics["dropped_examples"]),
    )
