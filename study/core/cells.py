"""Expanding a spec into cells and the corpora they need.

A cell is one (dataset, teacher, granularity, format, student, method, seed) with every setting
that shapes its result. Its `cell_id` is a hash of that canonical content, so the same cell has
the same id in every run and process, and changing any setting that matters makes a new cell.

Which combinations exist (the rule, documented in the README):
- reasoning formats (cot, answer_first, bsm, rar, symbolic) make one cell per teacher x level;
- label formats (answer_only, human) carry no reasoning: they have no granularity and no teacher
  (the label comes from the data set), so they make one cell per dataset x student x seed;
- each of those is made once per method of `methods` that admits its format and teacher (each
  method's settings say which: `admits` in study.core.spec): socratic needs a decomposition
  (format bsm, format human with Socratic annotations, or a program teacher); a corpus no cell
  uses is not built;
- a method with `students` has cells for those students only (its cells are the same as without);
- a kd cell whose teacher is `cell:<name>` learns from that cell's final student (the name may
  hold {corpus} and {seed}: the kd cell's corpus name and seed): the name must be
  a cell of the grid of another method that trains one student on the corpus text (a kd cell
  cannot teach kd cells; a socratic cell's role models cannot teach), and the teacher cell is
  part of the kd cell (its id is in the kd cell's id); the launcher trains it first.
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
    SpecError,
    EvalSpec,
    ExportSpec,
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
# What a cell writes besides its result (the student's export) does not change the result: never in the id.
OUTPUT_SETTINGS = frozenset({"export"})
# Which cells a method has (its `students`) is not what any of them computes: in no id.
GRID_SELECTION_FIELDS = frozenset({"students"})


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
    # a kd cell's `cell:` teacher: the cell whose final student teaches this one; else None
    teacher_cell: Cell | None = None
    export: ExportSpec = ExportSpec()  # in no id (OUTPUT_SETTINGS)

    @property
    def cell_id(self) -> str:
        return content_hash(self.identity())

    def identity(self) -> dict[str, Any]:
        """What the id hashes: every field but where the data is and how the teacher runs, and a
        later setting (`LATER_SETTINGS`) only when it differs from what earlier cells had; never
        what the cell writes besides its result (`OUTPUT_SETTINGS`); a teacher cell by its own id
        (absent when there is none, as in every cell before kd)."""
        identity = self.model_dump(mode="json", exclude={"corpus": self.corpus.operational_fields(),
                                                          "method": GRID_SELECTION_FIELDS, "teacher_cell": True,
                                                          **{field: True for field in OUTPUT_SETTINGS}})
        for section, earlier in LATER_SETTINGS.items():
            for field, value in earlier.items():
                if identity[section][field] == value:
                    del identity[section][field]
        if self.teacher_cell is not None:
            identity["teacher_cell"] = self.teacher_cell.cell_id
        return identity

    @property
    def name(self) -> str:
        """Readable name, e.g. arith.program.L3.cot.tiny-s.sft.s0 (the method's `label`)."""
        return f"{self.corpus.name}.{self.student.name}.{self.method.label}.s{self.seed}"


def corpus_keys(spec: StudySpec) -> list[CorpusKey]:
    """Every corpus the spec's cells need, each once, in a deterministic order."""
    return [key for key in _grid_corpora(spec)
            if any(method.admits(key.format, key.teacher) for method in spec.methods)]


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
    """Pure and deterministic: the same spec gives the same cells in the same order, each id once
    (the spec refuses repeated seeds, levels, formats and names; a cell id found twice anyway is
    a SpecError, never two trials writing one cell folder). Raises SpecError for a `cell:` teacher
    that names no cell of another method."""
    train = TrainSettings(**spec.training.model_dump(exclude={"seeds"}))
    cells = [
        Cell(
            corpus=key,
            student=student,
            method=method,
            seed=seed,
            train=train,
            evaluation=spec.evaluation,
            tokenizer=spec.tokenizer if student.tiny is not None else None,
            export=spec.export,
        )
        for key in corpus_keys(spec)
        for method in spec.methods
        if method.admits(key.format, key.teacher)
        for student in spec.students
        if method.trains(student.name)
        for seed in spec.training.seeds
    ]
    ids = [cell.cell_id for cell in cells]
    repeated = [cell.name for index, cell in enumerate(cells) if cell.cell_id in ids[:index]]
    if repeated:
        raise SpecError(f"cells {repeated} are given twice (the same cell id); give each grid entry once")
    return _with_teacher_cells(cells)


def check_grid(spec: StudySpec, source: str) -> None:
    """A spec whose grid is empty (a teacher's level lists leave out its formats, say) is bad
    input: `plan` and `run` refuse it, naming why, before anything starts."""
    if not expand_grid(spec):
        raise SpecError(f"{source}: the grid is empty: no dataset x format x teacher x level is left once "
                        f"formats_by_dataset and the teachers' levels_by_format / levels_by_dataset apply "
                        f"(granularities {spec.granularities}, formats {spec.formats})")


def _with_teacher_cells(cells: list[Cell]) -> list[Cell]:
    """Each kd cell with a `cell:` teacher gets that cell (by name, among cells of other methods)."""
    by_name = {cell.name: cell for cell in cells}
    resolved = []
    for cell in cells:
        name = cell.method.teacher_cell_for(cell.corpus.name, cell.seed)
        if name is not None:
            teacher = by_name.get(name)
            if teacher is None or teacher.method.kind == cell.method.kind or not teacher.method.trains_one_student:
                others = sorted(n for n, c in by_name.items()
                                if c.method.kind != cell.method.kind and c.method.trains_one_student)
                more = " ..." if len(others) > 8 else ""
                raise SpecError(f"methods.{cell.method.kind}.teacher_model: 'cell:{name}' names no cell of another "
                                f"method (one that trains one student) in this study's grid; "
                                f"its cells: {others[:8]}{more}")
            cell = cell.model_copy(update={"teacher_cell": teacher})
        resolved.append(cell)
    return resolved


def teacher_cells(cells: list[Cell]) -> list[Cell]:
    """The cells some other cell of `cells` learns from, each once, in grid order."""
    ids = {cell.teacher_cell.cell_id for cell in cells if cell.teacher_cell is not None}
    return [cell for cell in cells if cell.cell_id in ids]
