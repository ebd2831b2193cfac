"""White-box knowledge distillation (`method: kd`): the student learns the teacher model's
next-token distribution at every target token of the corpus (teacher forcing on prompt +
rationale), besides the corpus tokens themselves.

    loss = (1 - alpha) * cross-entropy + alpha * divergence,   both summed over target tokens

so trainables/step.py divides by the step's target tokens exactly as for SFT (packing,
micro-batches and workers weigh every token the same). The divergence, per target token, with
s = log_softmax(student_logits / T) and t = log_softmax(teacher_logits / T) on the support below:
- forward_kl: KL(t || s);  reverse_kl: KL(s || t);
- jsd: the generalised JSD of GKD (Agarwal et al. 2024, TRL's `generalized_jsd_loss`):
  beta * KL(t || m) + (1 - beta) * KL(s || m), m = beta * t + (1 - beta) * s (as probabilities).
No T^2 factor (as in GKD).

The tail beyond the teacher's top k: with `top_k: k`, both distributions are restricted to the
teacher's k most likely tokens at that position and each is renormalised over them (softmax of
the k logits / T); the teacher's mass outside them is dropped, not spread or bucketed. Stored
log-probs (T = 1) differ from logits by a constant per position, which the renormalisation
removes, so offline (stored) and online (live teacher) give the same term. `top_k: None`
(online only) compares whole vocabularies.

Offline: the teacher's top-k log-probs at every target token of a cell's examples are computed
once (`ensure_teacher_logits`, which the launcher runs before the cells that need them), stored
under <study>/teacher_logits/<id>.npz (compressed; ids as uint16 when the vocabulary allows,
log-probs float16) with a card beside it; <id> is a hash of the teacher, k and the examples'
token ids (which fix corpus, filter, tokenizer, template and max_length), so every student with
the same tokens reads the same file. Online: the frozen teacher runs in each Train worker, beside
the student but not part of the trained module (neither checkpointed nor optimised); under FSDP2
it is sharded like the student (`frozen_models`, trainables/parallel.py), so each of N workers
holds 1/N of its weights and gathers one layer at a time in its forward.

The teacher is an HF model id or folder, or `cell:<name>`: that cell's final student, rebuilt from
its last checkpoint. Its vocabulary must be the student's (`check_kd_teachers`, before a run).
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from study.core import storage
from study.core.cells import Cell, CorpusKey, content_hash, expand_grid
from study.core.corpora import load_corpus, training_rows
from study.core.datasets import Problem
from study.core.spec import EvalSpec, KdMethod, SpecError, StudentSpec, StudySpec, TrainSettings
from study.core.storage import StudyPaths
from trainables import checkpoints
from trainables.data import IGNORE_INDEX, EncodedCorpus, Example, TeacherTopK, encode_corpus
from trainables.evaluate import Evaluation, evaluate
from trainables.lora import merged, with_lora
from trainables.packing import collate_padded
from trainables.step import TargetLogits, TargetLoss, target_logits, to_device
from trainables.students import build_student, student_tokenizer
from trainables.tokenizer import load_tokenizer

STUDENT = "student"
TEACHER_BATCH_TOKENS = 16384  # padded tokens per teacher forward pass when computing stored log-probs


class KdTeacherError(SpecError):
    """A kd teacher that cannot teach this study's students (another vocabulary, or it does not
    load). A SpecError: the CLI reports it as bad input (exit 2), before anything is written."""


# --- the divergence -------------------------------------------------------------------------------

def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, settings: KdMethod) -> torch.Tensor:
    """Per row (target token): the settings' divergence between teacher and student, each
    softmax(x / temperature) over the row's support (the columns given)."""
    student = F.log_softmax(student_logits.float() / settings.temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / settings.temperature, dim=-1)
    if settings.loss == "forward_kl":
        return _kl(teacher, student)
    if settings.loss == "reverse_kl":
        return _kl(student, teacher)
    beta = settings.beta
    mixture = torch.logsumexp(torch.stack([teacher + np.log(beta), student + np.log(1 - beta)]), dim=0)
    return beta * _kl(teacher, mixture) + (1 - beta) * _kl(student, mixture)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities (0 log 0 = 0)."""
    return torch.where(p_log > -torch.inf, p_log.exp() * (p_log - q_log), 0.0).sum(-1)


def on_support(student_logits: torch.Tensor, teacher_ids: torch.Tensor | None,
               teacher_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher values on the teacher's top-k tokens (`teacher_ids`), or on the shared
    vocabulary when there are no ids (a padded vocabulary may be longer on one side)."""
    if teacher_ids is not None:
        return student_logits.gather(-1, teacher_ids), teacher_logprobs
    shared = min(student_logits.shape[-1], teacher_logprobs.shape[-1])
    return student_logits[:, :shared], teacher_logprobs[:, :shared]


def top_k(teacher_logits: torch.Tensor, k: int | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The teacher's k largest log-probabilities and their token ids per row (None ids: all)."""
    logprobs = F.log_softmax(teacher_logits.float(), dim=-1)
    if k is None:
        return None, logprobs
    values, ids = logprobs.topk(k, dim=-1)
    return ids, values


class DistillationLoss(torch.nn.Module):
    """The kd loss of a batch, summed over its target tokens. The student is the only submodule
    (parameter names `student.*`, as SFT's `TargetLoss`); an online teacher is held outside the
    module tree, so layouts, optimizer and checkpoints see the student alone."""

    def __init__(self, student: PreTrainedModel, settings: KdMethod, teacher: PreTrainedModel | None) -> None:
        super().__init__()
        self.student = student
        self.settings = settings
        # a tuple (empty offline): not registered as a submodule
        self._online_teacher = (TargetLogits(teacher),) if teacher is not None else ()
        if teacher is not None and teacher.config._attn_implementation != student.config._attn_implementation:
            teacher.set_attn_implementation(student.config._attn_implementation)  # packed / varlen batches

    @property
    def frozen_models(self) -> tuple[TargetLogits, ...]:
        """What runs beside the student and is never trained: the online teacher, whose forward gives
        its target logits (trainables/parallel.py shards it like the student)."""
        return self._online_teacher

    def forward(self, batch: dict) -> torch.Tensor:
        logits = target_logits(self.student, batch)
        targets = batch["target_ids"][batch["target_ids"] != IGNORE_INDEX]
        cross_entropy = F.cross_entropy(logits.float(), targets, reduction="sum")
        ids, teacher = self._teacher_top_k(batch)
        student, teacher = on_support(logits, ids, teacher)
        distillation = divergence(student, teacher, self.settings).sum()
        return (1 - self.settings.alpha) * cross_entropy + self.settings.alpha * distillation

    def _teacher_top_k(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor]:
        if not self._online_teacher:  # offline: stored with the examples
            return batch["teacher_ids"], batch["teacher_logprobs"]
        (teacher,) = self._online_teacher
        with torch.no_grad():
            return top_k(teacher(batch), self.settings.top_k)


# --- the method -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kd:
    """`method: kd` for trainables/methods.py: one student, SFT's examples (with the teacher's
    stored top-k when offline), the distillation loss, SFT's evaluation."""

    settings: KdMethod
    cell: Cell
    paths: StudyPaths
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    roles: ClassVar[tuple[str, ...]] = (STUDENT,)

    def examples(self, role: str, tokenizer: PreTrainedTokenizerBase, corpus: CorpusKey, rows: pd.DataFrame,
                 settings: TrainSettings, template: str = "plain") -> EncodedCorpus:
        encoded = encode_corpus(tokenizer, corpus.dataset.name, rows, settings.max_length, settings.overlong, template)
        if self.settings.mode == "online":
            return encoded
        stored = read_teacher_logits(self.paths, logits_id(self.cell, encoded.examples))
        return replace(encoded, examples=[replace(e, teacher=t) for e, t in zip(encoded.examples, stored, strict=True)])

    def loss_module(self, role: str, model: PreTrainedModel) -> DistillationLoss:
        return DistillationLoss(model, self.settings, self.online_teacher if self.settings.mode == "online" else None)

    @cached_property
    def online_teacher(self) -> PreTrainedModel:
        return load_teacher(self.cell, self.paths, self.tokenizer, self.device)

    def evaluate(self, models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, dataset: str,
                 problems: list[Problem], settings: EvalSpec, template: str = "plain") -> Evaluation:
        return evaluate(models[STUDENT], tokenizer, dataset, problems, settings, template)


# --- the teacher ------------------------------------------------------------------------------------

def teacher_identity(cell: Cell) -> str:
    """What names a kd cell's teacher in ids: its cell id for `cell:` teachers, else the model."""
    return f"cell:{cell.teacher_cell.cell_id}" if cell.teacher_cell is not None else cell.method.teacher_model


def load_teacher(cell: Cell, paths: StudyPaths, tokenizer: PreTrainedTokenizerBase,
                 device: torch.device) -> PreTrainedModel:
    """A kd cell's teacher, frozen, in eval mode, on `device`: its teacher cell's final student
    (rebuilt from that cell's last checkpoint), or the HF model."""
    if cell.teacher_cell is not None:
        teacher = trained_student(cell.teacher_cell, paths, tokenizer)
    else:
        teacher = AutoModelForCausalLM.from_pretrained(cell.method.teacher_model, torch_dtype=torch.float32)
    return teacher.requires_grad_(False).eval().to(device)


def trained_student(cell: Cell, paths: StudyPaths, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A finished cell's student with its final weights (LoRA adapters merged), from the cell's
    last Train checkpoint (its `student/` folder: a teacher cell's method trains one model)."""
    found = sorted(storage.list_dirs(storage.join(paths.cell_dir(cell.cell_id), "train"), prefix="checkpoint_"))
    if not found:
        raise FileNotFoundError(f"teacher cell {cell.name} [{cell.cell_id}] has no checkpoint: has it finished?")
    with tempfile.TemporaryDirectory() as scratch:
        # one folder per role (trainables/checkpoints.py); a teacher cell trains one model, the student
        states = checkpoints.read_roles(storage.download_dir(found[-1], Path(scratch)))
    if STUDENT not in states:
        raise FileNotFoundError(f"teacher cell {cell.name} [{cell.cell_id}]: its last checkpoint {found[-1]} has no "
                                f"{STUDENT}/ folder (written before checkpoints had one folder per role); run the "
                                "teacher cell again in a new study")
    state = states[STUDENT]
    student = build_student(cell.student, tokenizer, cell.train.max_length, cell.seed)
    if cell.train.finetune == "lora":
        student = with_lora(student, cell.train.lora, cell.student.name)
    checkpoints.load_model(state, TargetLoss(student))  # every method names its student `student.`
    return merged(student)


# --- stored top-k log-probs (offline) ----------------------------------------------------------------

def logits_id(cell: Cell, examples: list[Example]) -> str:
    """Content address of a kd cell's stored teacher log-probs: teacher, k and the exact tokens."""
    tokens = content_hash({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}, 64)
    return content_hash({"teacher": teacher_identity(cell), "top_k": cell.method.top_k, "tokens": tokens})


def cell_examples(cell: Cell, paths: StudyPaths, tokenizer: PreTrainedTokenizerBase) -> list[Example]:
    """A cell's training examples, as its Train workers encode them (trainables/train.py)."""
    rows = training_rows(cell.corpus, load_corpus(paths, cell.corpus))
    return encode_corpus(tokenizer, cell.corpus.dataset.name, rows, cell.train.max_length, cell.train.overlong,
                         cell.student.template).examples


def compute_top_k(teacher: PreTrainedModel, examples: list[Example], k: int, pad_id: int,
                  device: torch.device) -> list[TeacherTopK]:
    """The teacher's top-k log-probs at every target token of each example (teacher forcing),
    in batches of about TEACHER_BATCH_TOKENS padded tokens, longest first."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    found: dict[int, TeacherTopK] = {}
    start = 0
    while start < len(order):
        rows = max(1, TEACHER_BATCH_TOKENS // len(examples[order[start]].input_ids))
        chosen = order[start:start + rows]
        with torch.no_grad():
            ids, logprobs = top_k(target_logits(teacher, to_device(collate_padded([examples[i] for i in chosen], pad_id),
                                                                     device)), k)
        counts = [examples[i].n_targets for i in chosen]
        for index, part_ids, part_logprobs in zip(chosen, ids.split(counts), logprobs.split(counts)):
            found[index] = TeacherTopK(part_ids.cpu().numpy().astype(np.int32), part_logprobs.cpu().numpy().astype(np.float16))
        start += rows
    return [found[i] for i in range(len(examples))]


def write_teacher_logits(paths: StudyPaths, key: str, topk: list[TeacherTopK], card: dict) -> int:
    """Store one cell's top-k (compressed, with a checksum) and its card; returns the file's bytes."""
    ids = np.concatenate([t.ids for t in topk])
    id_type = np.uint16 if ids.size == 0 or ids.max() < 2**16 else np.int32
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=ids.astype(id_type), logprobs=np.concatenate([t.logprobs for t in topk]),
                        counts=np.array([len(t.ids) for t in topk], dtype=np.int64))
    data = buffer.getvalue()
    storage.write_bytes_checked(paths.teacher_logits(key), data)
    targets = int(len(ids))
    card = {**card, "targets": targets, "bytes": len(data), "bytes_per_target_token": len(data) / max(1, targets)}
    storage.write_text_atomic(paths.teacher_logits_card(key), json.dumps(card, indent=2))
    return len(data)


def read_teacher_logits(paths: StudyPaths, key: str) -> list[TeacherTopK]:
    location = paths.teacher_logits(key)
    if not storage.exists(location):
        raise FileNotFoundError(f"{location}: the teacher's log-probs for this cell were not computed "
                                "(the launcher computes them before the cell runs)")
    stored = np.load(io.BytesIO(storage.read_bytes_checked(location)))
    bounds = np.cumsum(stored["counts"])[:-1]
    return [TeacherTopK(ids.astype(np.int32), logprobs) for ids, logprobs in
            zip(np.split(stored["ids"], bounds), np.split(stored["logprobs"], bounds))]


def ensure_teacher_logits(cells: list[Cell], paths: StudyPaths, device: torch.device | None = None) -> int:
    """Compute and store the teacher top-k of every offline kd cell given whose file is missing
    (each file once, whichever students share it); returns the teacher forward passes run."""
    device = device or torch.device("cpu")
    with tempfile.TemporaryDirectory() as scratch:
        study_tokenizer = load_tokenizer(storage.download_dir(paths.tokenizer, Path(scratch)))
    passes = 0
    teachers: dict[str, PreTrainedModel] = {}
    for cell in cells:
        if not isinstance(cell.method, KdMethod) or cell.method.mode != "offline":
            continue
        tokenizer = student_tokenizer(cell.student, study_tokenizer)
        examples = cell_examples(cell, paths, tokenizer)
        key = logits_id(cell, examples)
        if storage.exists(paths.teacher_logits(key)):
            continue
        name = teacher_identity(cell)
        if name not in teachers:
            teachers[name] = load_teacher(cell, paths, tokenizer, device)
        calls: list[int] = []  # the teacher's forward passes, counted where they happen
        hook = teachers[name].get_decoder().register_forward_hook(lambda *_: calls.append(1))
        try:
            topk = compute_top_k(teachers[name], examples, cell.method.top_k, tokenizer.pad_token_id, device)
        finally:
            hook.remove()
        passes += len(calls)
        size = write_teacher_logits(paths, key, topk, {"teacher": name, "corpus_id": cell.corpus.corpus_id,
                                                       "top_k": cell.method.top_k, "examples": len(examples),
                                                       "forward_passes": len(calls), "first_cell": cell.name})
        print(f"teacher log-probs {key}: {cell.method.teacher_model} on {cell.corpus.name}, top {cell.method.top_k}, "
              f"{len(examples)} examples, {size / 2**20:.2f} MiB", flush=True)
    return passes


# --- the vocabulary check (before a run) ---------------------------------------------------------

STUDY_TOKENIZER = "the study tokenizer"


def check_kd_teachers(spec: StudySpec) -> None:
    """Raise KdTeacherError unless every kd cell's teacher reads with its student's vocabulary:
    both tiny (the study tokenizer), or both hub models whose tokenizers have the same vocabulary.
    Also raises SpecError for a `cell:` teacher that names no cell (study.core.cells)."""
    vocabularies: dict[str, dict[str, int] | str] = {}
    for cell in expand_grid(spec):
        if not isinstance(cell.method, KdMethod):
            continue
        teacher = _vocabulary(_teacher_source(cell), vocabularies)
        student = _vocabulary(_student_source(cell.student), vocabularies)
        if teacher != student:
            raise KdTeacherError(
                f"methods.kd.teacher_model: teacher '{cell.method.teacher_model}' ({_describe(teacher)}) and student "
                f"'{cell.student.name}' ({_describe(student)}) do not share a vocabulary; kd compares their "
                "distributions token by token, so both must read with the same tokenizer")


def _teacher_source(cell: Cell) -> str | None:
    """Where a kd teacher's vocabulary comes from: None for the study tokenizer, else an HF id or folder."""
    if cell.teacher_cell is not None:
        return _student_source(cell.teacher_cell.student)
    return cell.method.teacher_model


def _student_source(student: StudentSpec) -> str | None:
    return None if student.tiny is not None else student.hf_id


def _vocabulary(source: str | None, seen: dict[str, dict[str, int] | str]) -> dict[str, int] | str:
    if source is None:
        return STUDY_TOKENIZER
    if source not in seen:
        try:
            seen[source] = AutoTokenizer.from_pretrained(source).get_vocab()
        except (OSError, ValueError) as error:
            raise KdTeacherError(f"methods.kd.teacher_model: the tokenizer of '{source}' does not load: "
                                 f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
                                 ) from None
    return seen[source]


def _describe(vocabulary: dict[str, int] | str) -> str:
    return vocabulary if isinstance(vocabulary, str) else f"a vocabulary of {len(vocabulary)} tokens"
