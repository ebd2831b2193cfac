"""Expanding a spec into cells and the corpora they need.

A cell is one (dataset, teacher, granularity, format, student, method, seed) with every setting
that shapes its result. Its `cell_id` is a hash of that canonical content, so the same cell has
the same id in every run and process, and changing any setting that matters makes a new cell.

Which combinations exist (the rule, documented in the README):
- reasoning formats (cot, answer_first, bsm, rar, symbolic) make one cell per teacher x level;
- label formats (answer_only, human) carry no reasoning: they have no granularity and no teacher
  (the label comes from the data set), so they make one cell per dataset x student x seed.
- a method makes cells only on the (format, teacher) points it admits (`admits` of its settings
  model): socratic needs a decomposition (format bsm, format human with Socratic annotations, or a
  program teacher); a corpus no cell uses is not built.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from study.core.datasets import dataset_info
from study.core.prompts import prompt_hash
from study.core.spec import (
    LABEL_FORMATS,
    DatasetSpec,
    EvalSpec,
    Format,
    Frozen,
    MethodSpec,
    StudentSpec,
    StudySpec,
    TeacherSpec,
    TokenizerSpec,
    TrainSettings,
)

ID_LENGTH = 12
# Where data lives and how a teacher is run are not what a corpus is: these fields are left out
# of corpus and cell ids, so moving the data (or reading it from the hub), or serving a teacher
# differently, keeps every id and result. Each teacher kind names its own (`operational_fields`
# in study.core.spec); a prompt file's path is one, its content's hash (`prompt_hash`) is in.
# A corpus keeps every row, so which rows students train on (the teacher's `filter`) is part of
# the cell's id only.
DATASET_LOCATION_FIELDS = frozenset({"path", "hub"})
# Settings added after studies had results, with the value every earlier cell had: at that value
# they are left out of the cell id, so earlier cells keep their ids (and results); any other value
# is in it.
LATER_SETTINGS = {"student": {"template": "plain"}, "evaluation": {"profile": "robust"}}


def content_hash(obj: BaseModel | dict[str, Any], length: int = ID_LENGTH) -> str:
    """Short sha256 of canonical JSON: stable across runs, processes and machines."""
    payload = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


class CorpusKey(Frozen):
    """One teacher corpus: shared by every student trained on it."""

    dataset: DatasetSpec
    teacher: TeacherSpec | None
    granularity: int | None
    format: Format
    prompt_hash: str | None = None  # generating teachers: the hash of the prompt they are asked with

    @property
    def corpus_id(self) -> str:
        return f"{self.name}-{content_hash(self.identity())}"

    def identity(self) -> dict[str, Any]:
        excluded = self.operational_fields()
        if self.teacher is not None:
            excluded["teacher"] = excluded["teacher"] | {"filter"}
        return self.model_dump(mode="json", exclude=excluded)

    def operational_fields(self) -> dict[str, Any]:
        """The fields in neither corpus nor cell id: where the data set is, how the teacher is run."""
        return {"dataset": DATASET_LOCATION_FIELDS,
                "teacher": self.teacher.operational_fields if self.teacher is not None else frozenset()}

    @property
    def name(self) -> str:
        return ".".join(p for p in (self.dataset.name, self.teacher_name, self.level_name, self.format) if p)

    @property
    def teacher_name(self) -> str | None:
        return self.teacher.name if self.teacher else None

    @property
    def level_name(self) -> str | None:
        return f"L{self.granularity}" if self.granularity is not None else None


class Cell(Frozen):
    corpus: CorpusKey
    student: StudentSpec
    method: MethodSpec
    seed: int
    train: TrainSettings
    evaluation: EvalSpec
    tokenizer: TokenizerSpec | None  # the study tokenizer, for a tiny student (which reads with it); else None

    @property
    def cell_id(self) -> str:
        return content_hash(self.identity())

    def identity(self) -> dict[str, Any]:
        """What the id hashes: every field but where the data is and how the teacher runs, and a
        later setting (`LATER_SETTINGS`) only when it differs from what earlier cells had."""
        identity = self.model_dump(mode="json", exclude={"corpus": self.corpus.operational_fields()})
        for section, earlier in LATER_SETTINGS.items():
            for field, value in earlier.items():
                if identity[section][field] == value:
                    del identity[section][field]
        return identity

    @property
    def name(self) -> str:
        """Readable name, e.g. arith.program.L3.cot.tiny-s.sft.s0 (the method's `label`)."""
        return f"{self.corpus.name}.{self.student.name}.{self.method.label}.s{self.seed}"


def corpus_keys(spec: StudySpec) -> list[CorpusKey]:
    """Every corpus the spec's cells need, each once, in a deterministic order."""
    return [key for key in _grid_corpora(spec) if spec.method.admits(key.format, key.teacher)]


def _grid_corpora(spec: StudySpec) -> list[CorpusKey]:
    """Every corpus of the spec's grid of data sets, formats, teachers and levels."""
    keys: list[CorpusKey] = []
    for dataset in spec.datasets:
        for fmt in spec.formats_of(dataset.name):
            if fmt in LABEL_FORMATS:
                keys.append(CorpusKey(dataset=dataset, teacher=None, granularity=None, format=fmt))
                continue
            for teacher in spec.teachers:
                for level in [lv for lv in spec.granularities if teacher.provides(fmt, lv, dataset.name)]:
                    keys.append(CorpusKey(dataset=dataset, teacher=teacher, granularity=level, format=fmt,
                                          prompt_hash=_prompt_hash(teacher, dataset, level, fmt)))
    return keys


def _prompt_hash(teacher: TeacherSpec, dataset: DatasetSpec, level: int, fmt: Format) -> str | None:
    if not teacher.asks_with_prompts:
        return None
    return prompt_hash(level, fmt, dataset_info(dataset.name).answer_type, teacher.prompt_library)


def expand_grid(spec: StudySpec) -> list[Cell]:
    """Pure and deterministic: the same spec gives the same cells in the same order."""
    train = TrainSettings(**spec.training.model_dump(exclude={"seeds"}))
    return [
        Cell(
            corpus=key,
            student=student,
            method=spec.method,
            seed=seed,
            train=train,
            evaluation=spec.evaluation,
            tokenizer=spec.tokenizer if student.tiny is not None else None,
        )
        for key in corpus_keys(spec)
        for student in spec.students
        for seed in spec.training.seeds
    ]
