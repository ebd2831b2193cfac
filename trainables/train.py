"""What runs one cell's training loop (in each Ray Train worker, or in the trial itself: resources.engine,
trainables/sessions.py): fine-tune the student, then evaluate it.

The cell's method (trainables/methods.py) gives its roles (the models it trains: SFT and kd one,
the student; Socratic two-model a decomposer and a solver), each role's examples and loss module,
and its evaluation; the rest is the same for every method. The roles train in turn, each through
the whole sequence below with its own budget; a checkpoint holds every role trained so far, one
folder each (finished ones without optimizer state), so a restart skips the finished roles and
resumes the one in progress. Reads top to bottom, per role: the role's student built first (it
decides whether its examples are packed: `packing_for`), the data (tokenizer, corpus, the
method's examples, batch stream), the layout (LoRA, activation checkpointing, compile, FSDP2 or
DDP over workers: trainables/parallel.py, optimizer), resume from the run's latest checkpoint if
there is one, train (a checkpoint at an epoch end at most every checkpoint_every_s, and at the
end; step reports to Tune when tracking asks); then rank 0 rebuilds unsharded students from the
final states (LoRA adapters merged), saves each in Hugging Face format (cells/<id>/model, a
two-model cell's in model/<role>/: trainables/export.py), evaluates them on the test split,
writes predictions.parquet, and reports the cell's measurements. The budget is a number of
optimizer steps (from epochs or max_steps), never seconds. Each step's examples are packed into
rows with attention kept inside each example (trainables/packing.py), and the loss is averaged
per target token over the whole step, across workers (trainables/step.py).
"""
from __future__ import annotations

import gc
import itertools
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from study.core import storage
from study.core.cells import Cell
from study.core.corpora import load_corpus, training_rows
from study.core.results import Measurements
from study.core.spec import ResourcesSpec, TrackingSpec, TrainSettings
from study.core.storage import StudyPaths
from study.core.stored_splits import stored_split
from trainables import checkpoints
from trainables.accounting import flop_count, peak_flops
from trainables.checkpoints import Counters, TrainingState
from trainables.data import Example, mean_target_tokens, steps_per_epoch, total_steps, worker_batches
from trainables.evaluate import Evaluation
from trainables.export import MERGED_FOLDER, role_folder, save_merged, save_student
from trainables.lora import merged, with_lora
from trainables.methods import MethodContext, TrainingMethod, training_method
from trainables.packing import (
    PackingPlan,
    flatten_for_varlen,
    keeps_documents_apart,
    plan_packing,
    step_micro_batches,
    use_varlen_attention,
)
from trainables.parallel import distribute, prepare_layers
from trainables.sessions import RayTrainSession, TrainSession
from trainables.step import global_sum, target_count, train_step
from trainables.step_reports import StepMetrics, interval_passed, step_report_due, step_reports_of
from trainables.students import build_student, parameter_count, student_tokenizer
from trainables.tokenizer import load_tokenizer

TRAINING_FROM = "training from step"  # rank 0's first line of each role's training, in its worker log


def load_study_tokenizer(paths: StudyPaths, local_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(storage.download_dir(paths.tokenizer, local_dir))


def batch_stream(examples: list[Example], tokens_per_batch: int, seed: int, n_batches: int,
                 examples_per_batch: int | None = None, packed: bool = False, world: int = 1) -> list[list[int]]:
    """Enough epochs of shuffled worker batches, flattened, for n_batches (epoch e shuffles with
    seed, e); batch r of each step is rank r's (trainables.data.worker_batches)."""
    stream: list[list[int]] = []
    for epoch in itertools.count():
        if len(stream) >= n_batches:
            return stream[:n_batches]
        stream.extend(worker_batches(examples, tokens_per_batch, seed * 100_003 + epoch, world, examples_per_batch,
                                     packed))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class CorpusFacts:
    """What the result row says about the examples trained on."""

    dropped_examples: int
    truncated_examples: int
    teacher_accuracy: float  # of the whole corpus, before the teacher's filter
    mean_rationale_tokens: float
    packed: bool  # trained on packed rows (else padded: the spec said so, or the student cannot pack)
    n_examples: int

    @classmethod
    def total(cls, parts: list[CorpusFacts]) -> CorpusFacts:
        """The facts of every role's examples together (one corpus: one teacher accuracy; packed
        when every role's student trained on packed rows)."""
        n_examples = sum(p.n_examples for p in parts)
        mean = sum(p.mean_rationale_tokens * p.n_examples for p in parts) / n_examples
        return cls(dropped_examples=sum(p.dropped_examples for p in parts),
                   truncated_examples=sum(p.truncated_examples for p in parts),
                   teacher_accuracy=parts[0].teacher_accuracy, mean_rationale_tokens=mean,
                   packed=all(p.packed for p in parts), n_examples=n_examples)


@dataclass(frozen=True)
class TrainingData:
    examples: list[Example]
    plan: PackingPlan
    stream: list[list[int]]  # batch b of step s on rank r is stream[s * world + r]
    n_steps: int
    per_epoch: int
    facts: CorpusFacts


def training_data(cell: Cell, paths: StudyPaths, tokenizer: PreTrainedTokenizerBase, world: int,
                  method: TrainingMethod, role: str, packing: bool | None = None) -> TrainingData:
    """The cell's examples and its batches; `packing`: the spec's, unless the student cannot keep
    packed documents apart (trainables.packing.keeps_documents_apart)."""
    settings = cell.train
    corpus = load_corpus(paths, cell.corpus)
    encoded = method.examples(role, tokenizer, cell.corpus, training_rows(cell.corpus, corpus), settings,
                              cell.student.template)
    examples = encoded.examples
    plan = plan_packing(examples, settings.packing if packing is None else packing, settings.pack_length)
    per_epoch = steps_per_epoch(examples, settings.tokens_per_batch, world, settings.examples_per_batch, plan.packing)
    n_steps = total_steps(settings.epochs, settings.max_steps, per_epoch)
    stream = batch_stream(examples, settings.tokens_per_batch, cell.seed, n_steps * world, settings.examples_per_batch,
                          plan.packing, world)
    facts = CorpusFacts(dropped_examples=encoded.dropped, truncated_examples=encoded.truncated,
                        teacher_accuracy=float(corpus["correct"].mean()),
                        mean_rationale_tokens=mean_target_tokens(examples), packed=plan.packing,
                        n_examples=len(examples))
    return TrainingData(examples, plan, stream, n_steps, per_epoch, facts)


@dataclass
class Layout:
    """The student as trained: `loss_module` (the method's module around the student, whose
    parameter names are the same under every layout: what checkpoints hold) and `wrapped` (what
    steps: the loss module itself, or sharded in place by FSDP2, or wrapped by DDP)."""

    student: PreTrainedModel
    loss_module: torch.nn.Module
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    varlen: bool


def build_layout(cell: Cell, resources: ResourcesSpec, student: PreTrainedModel, data: TrainingData,
                 device: torch.device, world: int, loss_module_of: Callable[[PreTrainedModel], torch.nn.Module]) -> Layout:
    """The built `student` (on `device`) laid out for training: fused AdamW (one kernel over all
    parameters, on a CPU as on a GPU); GPU: bf16 compute over fp32 master weights, varlen flash
    attention when packing."""
    settings = cell.train
    if settings.finetune == "lora":
        student = with_lora(student, settings.lora, cell.student.name)
    varlen = data.plan.packing and device.type == "cuda"
    if varlen:
        use_varlen_attention(student)
    prepare_layers(student, resources.activation_checkpointing, resources.compile)
    loss_module = loss_module_of(student)
    wrapped = distribute(loss_module, student, world, resources.sharding, device)
    optimizer = torch.optim.AdamW([p for p in loss_module.parameters() if p.requires_grad], lr=settings.lr_peak,
                                  weight_decay=settings.weight_decay, fused=True)
    scheduler = get_scheduler(settings.schedule, optimizer, num_warmup_steps=int(settings.warmup_ratio * data.n_steps),
                              num_training_steps=data.n_steps)
    return Layout(student, loss_module, wrapped, optimizer, scheduler, varlen)


def saved_states(session: TrainSession) -> dict[str, TrainingState]:
    """The run's latest checkpoint, by role (every rank reads it whole); empty when there is none."""
    with session.latest_checkpoint() as directory:
        return {} if directory is None else checkpoints.read_roles(directory)


def _resume(layout: Layout, saved: TrainingState | None, n_steps: int) -> Counters:
    """Load the role's saved state (every rank takes its shard); the saved counters, or zeros."""
    if saved is None:
        return Counters()
    if saved.optimizer is None and saved.counters.step < n_steps:
        raise RuntimeError(f"the checkpoint at step {saved.counters.step} of {n_steps} has no optimizer state "
                           f"({checkpoints.OPTIMIZER_FILE}); only a finished role's or cell's is deleted")
    checkpoints.load(saved, layout.loss_module, layout.optimizer, layout.scheduler)
    print(f"resumed from checkpoint at step {saved.counters.step}", flush=True)
    return replace(saved.counters)


@dataclass(frozen=True)
class RoleRun:
    """The role being trained, its state in the latest checkpoint, and the roles trained before it
    (their final states go into every checkpoint with this role's)."""

    role: str
    saved: TrainingState | None
    done: dict[str, TrainingState]


def train(cell: Cell, resources: ResourcesSpec, layout: Layout, data: TrainingData, tokenizer: PreTrainedTokenizerBase,
          device: torch.device, session: TrainSession, run: RoleRun,
          step_reports: TrackingSpec | None = None) -> TrainingState:
    """Steps from the resumed one to the last; returns the final state, gathered on rank 0.
    With `step_reports`, step metrics are reported every `every_steps` steps, at least
    `min_interval_s` apart, and at the last step (tracking); their steps and tokens count the
    roles trained before this one too."""
    rank, world = session.rank, session.world
    counters = _resume(layout, run.saved, data.n_steps)
    if rank == 0:  # in the worker's log (and what a test waits for before it kills a training worker)
        print(f"{cell.name} {run.role}: {TRAINING_FROM} {counters.step} of {data.n_steps}", flush=True)
    before = Counters(step=sum(s.counters.step for s in run.done.values()),
                      train_tokens=sum(s.counters.train_tokens for s in run.done.values()))
    step_metrics = StepMetrics(before.step + counters.step, before.train_tokens + counters.train_tokens)
    last_report = time.monotonic()
    layout.wrapped.train()
    autocast = torch.bfloat16 if device.type == "cuda" else None
    count_flops = flop_count(layout.student)
    started = last_checkpoint = time.monotonic()
    for step in range(counters.step, data.n_steps):
        chosen = [data.examples[i] for i in data.stream[step * world + rank]]
        micro_batches = step_micro_batches(chosen, data.plan, tokenizer.pad_token_id, cell.train.micro_batch_tokens)
        if layout.varlen:
            micro_batches = [flatten_for_varlen(batch, data.plan.row_length(chosen)) for batch in micro_batches]
        loss = train_step(layout.wrapped, layout.optimizer, layout.scheduler, micro_batches, world, device, autocast)
        check_loss(loss, step + 1, cell.train)
        lengths = [len(e.input_ids) for e in chosen]
        counters.train_tokens += int(global_sum(sum(lengths), world, device))
        targets = sum(target_count(b) for b in micro_batches)
        counters.train_flops += global_sum(count_flops(lengths, targets), world, device)
        counters.step, counters.loss = step + 1, loss
        if step_reports is not None and step_report_due(counters.step, data.n_steps, step_reports, last_report,
                                                        world, device):
            reporting = time.monotonic()
            so_far = replace(counters, step=before.step + counters.step,
                             train_tokens=before.train_tokens + counters.train_tokens)
            metrics = step_metrics.since_last(so_far, layout.scheduler, data.per_epoch, before.step + data.n_steps)
            session.report({**metrics, "epoch": counters.step / data.per_epoch}, checkpoint=None)
            step_metrics.reported(so_far)
            last_report = time.monotonic()
            started += last_report - reporting  # waiting for Train's controller is not training time
        if counters.step % data.per_epoch == 0 or counters.step == data.n_steps:
            counters.train_s += time.monotonic() - started
            started = time.monotonic()
            if counters.step < data.n_steps and interval_passed(last_checkpoint, resources.checkpoint_every_s,
                                                                world, device):
                state = checkpoints.gather(layout.loss_module, layout.optimizer, layout.scheduler, counters)
                _report(session, {**run.done, run.role: state}, metrics={})
                last_checkpoint = time.monotonic()
    return checkpoints.gather(layout.loss_module, layout.optimizer, layout.scheduler, counters)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the cell fails (after resources.trial_attempts) with this
    message in its error.txt, rather than train on and write a result no reader accepts."""


def check_loss(loss: float, step: int, settings: TrainSettings) -> None:
    """Every rank sees the same (all-reduced) loss, so every rank stops at the same step."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"training diverged: the loss is {loss} at step {step} (training.lr_peak "
                               f"{settings.lr_peak:g}); lower training.lr_peak, or raise warmup_ratio")


def train_and_evaluate(config: dict, session: TrainSession | None = None) -> dict:
    """Train and evaluate the cell of a Train loop `config` (trainables.cell.cell_config) where
    `session` runs it (default: in a Ray Train worker); the measurements rank 0 reported last."""
    cell = Cell.model_validate(config["cell"])
    paths = StudyPaths(config["study_root"])
    resources = ResourcesSpec.model_validate(config["resources"])
    session = session if session is not None else RayTrainSession()
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))
    rank, world = session.rank, session.world
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = student_tokenizer(cell.student, load_study_tokenizer(paths, Path(scratch) / "tokenizer"))
    device = session.device(use_gpu=resources.gpus_per_worker > 0)
    method = training_method(cell.method, MethodContext(cell, paths, tokenizer, device))
    saved = saved_states(session)
    finals: dict[str, TrainingState] = {}
    facts: list[CorpusFacts] = []
    for role in method.roles:  # each model of the cell in turn (SFT: one)
        run = RoleRun(role, saved.get(role), dict(finals))
        final, role_facts = train_role(cell, paths, resources, method, tokenizer, device, session, run,
                                       step_reports_of(config))
        facts.append(role_facts)
        finals[role] = checkpoints.finished(final, keep_weights=rank == 0)
        if final is not saved.get(role) and len(finals) < len(method.roles):
            _report(session, finals, metrics={})  # trained just now: a restart from here skips this role
    counters = Counters.total([state.counters for state in finals.values()])
    cost = training_cost(counters, world, device)
    # Train's result keeps the metrics of the last checkpointed report: the final checkpoint
    # carries the evaluation, so a restart after it only re-evaluates.
    measured = {}
    if rank == 0:
        with tempfile.TemporaryDirectory() as exported:
            students = {role: exported_student(cell, tokenizer, state, device, partial(method.loss_module, role),
                                               role_folder(Path(exported), method.roles, role))
                        for role, state in finals.items()}
            evaluation = _evaluate(cell, paths, method, students, tokenizer)
            storage.upload_dir(Path(exported), paths.cell_model(cell.cell_id))
        measured = _measurements(evaluation, students, counters, CorpusFacts.total(facts), cost).model_dump()
    _report(session, finals, metrics=measured)
    return measured


def train_role(cell: Cell, paths: StudyPaths, resources: ResourcesSpec, method: TrainingMethod,
               tokenizer: PreTrainedTokenizerBase, device: torch.device, session: TrainSession, run: RoleRun,
               step_reports: TrackingSpec | None) -> tuple[TrainingState, CorpusFacts]:
    """One role's model trained to its last step (or its final state as saved, when a restart
    finds it already trained), and the facts of its examples; the training memory freed after.
    The role's student is built first: whether it trains on packed rows depends on it."""
    student = build_student(cell.student, tokenizer, cell.train.max_length, cell.seed).to(device)
    data = training_data(cell, paths, tokenizer, session.world, method, run.role,
                         packing_for(cell, student, session.rank))
    if run.saved is not None and run.saved.counters.step >= data.n_steps:
        return run.saved, data.facts
    layout = build_layout(cell, resources, student, data, device, session.world,
                          partial(method.loss_module, run.role))
    del student
    final = train(cell, resources, layout, data, tokenizer, device, session, run, step_reports)
    del layout  # free the training memory (sharded weights, optimizer) before the next role or evaluation
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return final, data.facts


def packing_for(cell: Cell, student: PreTrainedModel, rank: int) -> bool:
    """The spec's packing, or padded rows for a student whose attention lets packed documents see
    each other (same loss either way; the result records which: `packed`)."""
    if not cell.train.packing or keeps_documents_apart(student):
        return cell.train.packing
    if rank == 0:
        print(f"student {cell.student.name}: its attention ignores position ids, so packed documents would see each "
              "other; training on padded rows instead (the same loss per document)", flush=True)
    return False


def exported_student(cell: Cell, tokenizer: PreTrainedTokenizerBase, state: TrainingState, device: torch.device,
                     loss_module_of: Callable[[PreTrainedModel], torch.nn.Module], folder: Path) -> PreTrainedModel:
    """The student to evaluate: plain (unsharded, uncompiled), with the trained weights (saved under
    the loss module's parameter names), LoRA adapters merged. Saved first in Hugging Face format into
    `folder` (trainables/export.py; before merging, and before evaluation may cast it to bf16)."""
    student = build_student(cell.student, tokenizer, cell.train.max_length, cell.seed)
    if cell.train.finetune == "lora":
        student = with_lora(student, cell.train.lora, cell.student.name)
    checkpoints.load_model(state, loss_module_of(student))
    save_student(student, tokenizer, cell, folder)
    evaluated = merged(student)
    if cell.train.finetune == "lora" and cell.export.merge:
        save_merged(evaluated, tokenizer, cell, folder / MERGED_FOLDER)
    return evaluated.to(device)


@dataclass(frozen=True)
class TrainingCost:
    """What training used besides time (None on a CPU, and MFU None off a listed GPU)."""

    peak_memory_gb: float | None  # peak GPU memory allocated (this worker)
    mfu: float | None  # model FLOPs utilization per GPU (trainables/accounting.py)


def training_cost(counters: Counters, world: int, device: torch.device) -> TrainingCost:
    peak = peak_flops(device)
    mfu = counters.train_flops / (max(counters.train_s, 1e-9) * world * peak) if peak else None
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return TrainingCost(peak_memory_gb=memory, mfu=mfu)


def _evaluate(cell: Cell, paths: StudyPaths, method: TrainingMethod, students: dict[str, PreTrainedModel],
              tokenizer: PreTrainedTokenizerBase) -> Evaluation:
    """The method's evaluation on the cell's test problems (the study's stored split: a worker reads
    nothing outside the study folder); its predictions written to the cell."""
    problems = stored_split(paths, cell.corpus.dataset, "test")[: cell.evaluation.test_size]
    evaluation = method.evaluate(students, tokenizer, cell.corpus.dataset.name, problems, cell.evaluation,
                                 cell.student.template)
    storage.write_parquet_atomic(paths.cell_predictions(cell.cell_id), evaluation.predictions)
    return evaluation


def _measurements(evaluation: Evaluation, students: dict[str, PreTrainedModel], counters: Counters,
                  facts: CorpusFacts, cost: TrainingCost) -> Measurements:
    predictions = evaluation.predictions
    return Measurements(
        student_params=sum(parameter_count(student) for student in students.values()),
        accuracy=evaluation.accuracy,
        accuracy_paper=evaluation.accuracy_paper,
        n_test=len(predictions),
        n_correct=int(predictions["correct"].sum()),
        n_unextractable=evaluation.n_unextractable,
        mean_generated_tokens=evaluation.mean_generated_tokens,
        train_tokens=counters.train_tokens,
        train_steps=counters.step,
        train_s=counters.train_s,
        tokens_per_s=counters.train_tokens / max(counters.train_s, 1e-9),
        final_loss=counters.loss,
        eval_s=evaluation.eval_s,
        eval_engine=evaluation.engine,
        dropped_examples=facts.dropped_examples,
        truncated_examples=facts.truncated_examples,
        packed=facts.packed,
        teacher_accuracy=facts.teacher_accuracy,
        mean_rationale_tokens=facts.mean_rationale_tokens,
        peak_memory_gb=cost.peak_memory_gb,
        mfu=cost.mfu,
    )


def _report(session: TrainSession, states: dict[str, TrainingState], metrics: dict) -> None:
    """Collective: every rank reports; rank 0 attaches the checkpoint (the full states it gathered,
    one per role trained so far); progress counts every role's steps."""
    counters = Counters.total([state.counters for state in states.values()])
    progress = {"step": counters.step, "loss": counters.loss, "train_tokens": counters.train_tokens}
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if session.rank == 0:
            checkpoints.save_roles(states, Path(directory))
            checkpoint = Path(directory)
        session.report({**progress, **metrics}, checkpoint=checkpoint)
