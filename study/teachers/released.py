"""The `released` teacher kind: the teacher CoT released with a paper, imported from its files.

A released file is a JSON list of alpaca rows `{instruction, output}` (the MATH release:
`{problem, level, type, solution, output, <teacher>_output}`). Its name says what it holds:

    SVAMP_ChatGPT_level3_ranked.json      data set, teacher, granularity level (format cot)
    0_SVAMP_chatgpt_level3BSM.json        ... in another format: BSM, RaR, SYM (symbolic)
    openbookqa_chatgpt_bsm_level3_ranked  the format as its own word works too
    SVAMP_only_ans.json, *_onlyans.json   answer only (no teacher, no level)
    svamp_human_annotation.json           the data set's own rationale (human)

A file named otherwise is given in the spec as `{path, dataset, format, granularity}`.
Each row is matched to its problem by normalised question text, scored against the problem's
gold answer, and kept (matched or not) with a report: rows, matched, unmatched, duplicate
questions, correct rate, unextractable rate.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.core.cells import CorpusKey
from study.core.corpora import CORPUS_COLUMNS
from study.core.datasets import (
    RELEASE_ALIASES,
    DataError,
    Problem,
    extract_answer,
    load_split,
    normalize_text,
    problem_text,
    score,
    training_text,
)
from study.core.datasets.sources import Record, read_records, require_json_list
from study.core.spec import LABEL_FORMATS, Format, ReleasedFile, ReleasedTeacher
from study.teachers.kind import TeacherKind

FORMAT_WORDS: dict[str, Format] = {"bsm": "bsm", "rar": "rar", "sym": "symbolic"}
LEVEL = re.compile(r"level_?(\d)(bsm|rar|sym)?$")
NOT_A_TEACHER = {"level", "ranked", "only", "ans", "onlyans", "human", "annotation", "train", "test", *FORMAT_WORDS}
NAMING_HELP = ("name it like '{dataset}_{teacher}_level{N}_ranked.json' (cot), '0_{dataset}_{teacher}_level{N}BSM.json' "
               "(BSM, RaR, SYM), '{dataset}_only_ans.json' or '{dataset}_human.json', or list it in the teacher's "
               "`files:` as {path: ..., dataset: ..., format: ..., granularity: N}")


@dataclass(frozen=True)
class ReleaseFile:
    """What one released file holds (teacher and granularity are None for label formats)."""

    path: Path
    dataset: str
    teacher: str | None
    granularity: int | None
    format: Format


@dataclass(frozen=True)
class ImportReport:
    file: str
    rows: int
    matched: int
    duplicates: int
    ambiguous: int
    correct: int
    unextractable: int

    @property
    def unmatched(self) -> int:
        return self.rows - self.matched

    def line(self) -> str:
        return (f"{self.file}: {self.rows} rows, {self.matched} matched, {self.unmatched} unmatched"
                f"{f' ({self.ambiguous} ambiguous)' if self.ambiguous else ''}, {self.duplicates} duplicate questions, "
                f"{self.correct / max(self.rows, 1):.1%} correct, {self.unextractable} without an answer")


def parse_release_name(path: str | Path) -> ReleaseFile:
    """Data set, teacher, level and format from a released file's name (`DataError` if unclear)."""
    path = Path(path)
    tokens = [t for t in path.stem.lower().split("_") if t]
    if tokens and tokens[0].isdigit():
        tokens = tokens[1:]  # the release's "0_" prefix
    dataset = RELEASE_ALIASES.get(tokens[0]) if tokens else None  # each data set declares its names
    if dataset is None:
        raise DataError(f"{path}: cannot tell the data set from the name; {NAMING_HELP}")
    stem = "_".join(tokens)
    if "onlyans" in tokens or "only_ans" in stem:
        return ReleaseFile(path, dataset, None, None, "answer_only")
    if "human" in tokens:
        return ReleaseFile(path, dataset, None, None, "human")
    level, fmt = _level_and_format(tokens)
    teacher = tokens[1] if len(tokens) > 1 and not tokens[1].startswith("level") and tokens[1] not in NOT_A_TEACHER \
        else None
    if level is None or teacher is None:
        raise DataError(f"{path}: cannot tell the {'level' if level is None else 'teacher'} from the name; {NAMING_HELP}")
    return ReleaseFile(path, dataset, teacher, level, fmt)


def _level_and_format(tokens: list[str]) -> tuple[int | None, Format]:
    level: int | None = None
    fmt: Format = "cot"
    for index, token in enumerate(tokens):
        joined = f"{token}_{tokens[index + 1]}" if token == "level" and index + 1 < len(tokens) else token
        match = LEVEL.match(joined)
        if match:
            level = int(match.group(1))
            fmt = FORMAT_WORDS[match.group(2)] if match.group(2) else fmt
        elif token in FORMAT_WORDS:
            fmt = FORMAT_WORDS[token]
    return level, fmt


def released_files(teacher: ReleasedTeacher) -> list[ReleaseFile]:
    """Every file a released teacher names: globs expanded (sorted), explicit entries as given."""
    files: list[ReleaseFile] = []
    for entry in teacher.files:
        if isinstance(entry, ReleasedFile):
            files.append(ReleaseFile(Path(entry.path), entry.dataset, teacher.name, entry.granularity, entry.format))
            continue
        matches = sorted(glob.glob(entry))
        if not matches:
            raise DataError(f"teacher '{teacher.name}': no file matches {entry}")
        files += [parse_release_name(match) for match in matches]
    return files


def find_release(teacher: ReleasedTeacher, dataset: str, granularity: int | None, fmt: Format) -> ReleaseFile:
    """The one file of this teacher for (dataset, level, format); an error if none or several."""
    own_name = (teacher.release_name or teacher.name).lower()
    candidates = [f for f in released_files(teacher) if f.dataset == dataset and f.format == fmt
                  and f.granularity == granularity
                  and (f.format in LABEL_FORMATS or f.teacher is None or f.teacher.lower() in (own_name, teacher.name))]
    level = f"level {granularity}" if granularity is not None else "no level"
    if not candidates:
        raise DataError(f"teacher '{teacher.name}': no released file for {dataset}, {level}, format {fmt} "
                        f"(teacher '{own_name}' in the name) among {[str(e) for e in teacher.files]}")
    if len(candidates) > 1:
        raise DataError(f"teacher '{teacher.name}': several released files for {dataset}, {level}, format {fmt}: "
                        f"{[str(c.path) for c in candidates]}")
    return candidates[0]


def read_release_rows(path: Path) -> list[tuple[str, str]]:
    """(question, rationale) per row; a malformed row names the file and the row index."""
    require_json_list(path, "a released file")
    rows = []
    for index, record in enumerate(read_records(path)):
        try:
            rows.append(_question_and_rationale(record))
        except (KeyError, ValueError) as error:
            raise DataError(f"{path}: row {index}: {error}; has fields {sorted(record)}") from None
    return rows


def _question_and_rationale(record: Record) -> tuple[str, str]:
    if "instruction" in record:
        question = " ".join(str(record[k]).strip() for k in ("instruction", "input") if str(record.get(k, "")).strip())
        rationale = record.get("output")
    elif "problem" in record:  # the MATH release: `output`, or `<teacher>_output`
        question = str(record["problem"])
        rationale = record.get("output") or next((v for k, v in record.items() if k.endswith("_output") and v), None)
    else:
        raise ValueError("expected 'instruction' and 'output' (alpaca) or 'problem' and 'output' (MATH release)")
    if not isinstance(rationale, str) or not rationale.strip():
        raise ValueError("no teacher output ('output' is missing or empty)")
    return question, rationale.strip()


def import_release(path: Path, dataset: str, problems: list[Problem]) -> tuple[pd.DataFrame, ImportReport]:
    """Match each released row to a problem, score it against gold, and report the join.

    Rows are never dropped: an unmatched row is kept with `matched` False (and never counted
    correct), a question repeated in the file is kept and counted, and a question that matches
    problems with different gold answers is left unmatched rather than joined to either."""
    index, ambiguous_keys = _question_index(problems)
    records: list[dict] = []
    seen: set[str] = set()
    duplicates = ambiguous = 0
    for question, rationale in read_release_rows(path):
        key = normalize_text(question)
        problem = index.get(key)
        ambiguous += key in ambiguous_keys
        if problem is not None:
            duplicates += problem.uid in seen
            seen.add(problem.uid)
        records.append(_row(dataset, question, rationale, problem))
    frame = pd.DataFrame(records, columns=CORPUS_COLUMNS)
    report = ImportReport(str(path), len(frame), int(frame["matched"].sum()), duplicates, ambiguous,
                          int(frame["correct"].sum()), int(frame["answer"].isna().sum()))
    return frame, report


def _question_index(problems: list[Problem]) -> tuple[dict[str, Problem], set[str]]:
    """Problems by normalised question (bare, and with its answer choices); keys shared by
    problems with different gold answers are ambiguous and left out."""
    index: dict[str, Problem] = {}
    ambiguous: set[str] = set()
    for problem in problems:
        for key in {normalize_text(problem.question), normalize_text(problem_text(problem))}:
            if key in index and index[key].answer != problem.answer:
                ambiguous.add(key)
            index.setdefault(key, problem)
    return {k: p for k, p in index.items() if k not in ambiguous}, ambiguous


def _row(dataset: str, question: str, rationale: str, problem: Problem | None) -> dict:
    choices = problem.choices if problem else ()
    return {
        "uid": problem.uid if problem else None,
        "question": problem_text(problem) if problem else question,
        "rationale": rationale,
        "answer": extract_answer(dataset, rationale, choices),
        "gold": problem.answer if problem else None,
        "correct": score(dataset, rationale, problem.answer, choices) if problem else False,
        "matched": problem is not None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def problems_from_answer_file(dataset: str, path: Path) -> list[Problem]:
    """Gold answers from the paper's answer-only release, for when the data set's own files are
    absent: each row's question with the answer its output gives."""
    problems = []
    for index, (question, output) in enumerate(read_release_rows(path)):
        answer = extract_answer(dataset, output)
        if answer is None:
            raise DataError(f"{path}: row {index}: the answer-only output {output!r} gives no answer")
        problems.append(Problem(uid=f"{path.stem}-{index}", question=question, answer=answer))
    return problems


def released_corpus(key: CorpusKey) -> pd.DataFrame:
    """A released teacher's file for this key, matched to the training split, with its report."""
    assert isinstance(key.teacher, ReleasedTeacher)
    release = find_release(key.teacher, key.dataset.name, key.granularity, key.format)
    frame, report = import_release(release.path, key.dataset.name, load_split(key.dataset, "train"))
    print(f"corpus {key.name}: imported {report.line()}", flush=True)
    return frame


class ReleasedKind(TeacherKind[ReleasedTeacher]):
    source = "imported"

    def check(self, teacher: ReleasedTeacher, keys: list[CorpusKey]) -> None:
        """Each corpus's file is found and read now, so a bad row stops the study before it starts."""
        for key in keys:
            read_release_rows(find_release(teacher, key.dataset.name, key.granularity, key.format).path)

    def training_texts(self, key: CorpusKey) -> list[str]:
        assert isinstance(key.teacher, ReleasedTeacher)
        release = find_release(key.teacher, key.dataset.name, key.granularity, key.format)
        return [training_text(key.dataset.name, q, r) for q, r in read_release_rows(release.path)]

    def offline_corpus(self, key: CorpusKey) -> pd.DataFrame:
        return released_corpus(key)


KIND = ReleasedKind()
