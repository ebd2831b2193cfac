"""The `released` teacher kind: the teacher CoT released with a paper, imported from its files.

A released file is a JSON list of alpaca rows `{instruction, output}` (the MATH release:
`{problem, level, type, solution, output, <teacher>_output}`). Its name says what it holds:

    SVAMP_ChatGPT_level3_ranked.json      data set, teacher, granularity level (format cot)
    0_SVAMP_chatgpt_level3BSM.json        ... in another format: BSM, RaR, SYM (symbolic)
    openbookqa_chatgpt_bsm_level3_ranked  the format as its own word works too
    SVAMP_only_ans.json, *_onlyans.json   answer only (no teacher, no level)
    svamp_human_annotation.json           the data set's own rationale (human)

A file named otherwise is given in the spec as `{path, dataset, format, granularity}`.
The rationale is the column the release's `dataset_info.json` names, else the teacher's own
`<teacher>_output` (in the MATH release `output` is the gold), else alpaca's `output`; a file
where that cannot be told is refused. Each row is matched to its problem by normalised question
text, scored against the problem's gold answer, and kept (matched or not) with a report: rows,
matched, unmatched, duplicate questions, correct rate, unextractable rate, and the golds the
rows write that cannot be read or differ from the data set's.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import pandas as pd

from study.core import storage
from study.core.cells import CorpusKey
from study.core.corpora import CORPUS_COLUMNS
from study.core.datasets import (
    RELEASE_ALIASES,
    Choice,
    DataError,
    Problem,
    extract_answer,
    inline_choices,
    load_split,
    normalize_text,
    problem_text,
    read_gold,
    training_text,
)
from study.core.datasets import dataset_info as dataset_info_of
from study.core.datasets.golds import unreadable_golds_line
from study.core.datasets.sources import (
    Location,
    Record,
    location_exists,
    location_is_dir,
    read_records,
    read_text,
    require_json_list,
)
from study.core.spec import LABEL_FORMATS, Format, ReleasedFile, ReleasedTeacher
from study.teachers.kind import TeacherKind

log = logging.getLogger(__name__)

FORMAT_WORDS: dict[str, Format] = {"bsm": "bsm", "rar": "rar", "sym": "symbolic"}
LEVEL = re.compile(r"level_?(\d)(bsm|rar|sym)?$")
NOT_A_TEACHER = {"level", "ranked", "only", "ans", "onlyans", "human", "annotation", "train", "test", *FORMAT_WORDS}
DATASET_INFO = "dataset_info.json"
NAMING_HELP = ("name it like '{dataset}_{teacher}_level{N}_ranked.json' (cot), '0_{dataset}_{teacher}_level{N}BSM.json' "
               "(BSM, RaR, SYM), '{dataset}_only_ans.json' or '{dataset}_human.json', or list it in the teacher's "
               "`files:` as {path: ..., dataset: ..., format: ..., granularity: N}")


@dataclass(frozen=True)
class ReleaseFile:
    """What one released file holds (teacher and granularity are None for label formats); `path`
    is a local path or a URI."""

    path: str
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
    unreadable_golds: int  # golds the rows write themselves (MATH's `output`) that cannot be read
    disagreeing_golds: int  # ... that differ from the data set's gold for the matched problem
    rationale_column: str  # which column was read as the rationale, and why

    @property
    def unmatched(self) -> int:
        return self.rows - self.matched

    def line(self) -> str:
        ambiguous = f" ({self.ambiguous} ambiguous)" if self.ambiguous else ""
        warnings = [f"{self.unreadable_golds} golds in the file cannot be read"] if self.unreadable_golds else []
        warnings += [f"{self.disagreeing_golds} golds in the file differ from the data set"] if self.disagreeing_golds else []
        return (f"{self.file}: {self.rows} rows (rationale {self.rationale_column}), {self.matched} matched, "
                f"{self.unmatched} unmatched{ambiguous}, {self.duplicates} duplicate questions, "
                f"{self.correct / max(self.rows, 1):.1%} correct, {self.unextractable} without an answer"
                + "".join(f"; warning: {w}" for w in warnings))


def parse_release_name(path: Location) -> ReleaseFile:
    """Data set, teacher, level and format from a released file's name (`DataError` if unclear)."""
    path = str(path)
    tokens = [t for t in storage.stem(path).lower().split("_") if t]
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
            files.append(ReleaseFile(entry.path, entry.dataset, teacher.name, entry.granularity, entry.format))
            continue
        matches = _glob(entry)
        if not matches:
            raise DataError(f"teacher '{teacher.name}': no file matches {entry}")
        files += [parse_release_name(match) for match in matches]
    return files


def _glob(pattern: str) -> list[str]:
    try:
        return storage.glob_files(pattern)
    except OSError as error:
        raise DataError(f"{pattern}: cannot be reached: {error}") from None


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


@dataclass(frozen=True)
class ReleaseRow:
    """One released row: the question, the teacher's rationale, and the gold the row itself
    writes (the MATH release's `output`, an alpaca `label`), as written; None when it writes none."""

    question: str
    rationale: str
    gold: str | None


@dataclass(frozen=True)
class Columns:
    """Which columns of a released file are the question (`prompt`, plus `query` when given),
    the rationale (`response`) and the row's own gold; `source` says how they were chosen."""

    prompt: str
    query: str | None
    response: str
    gold: str | None
    source: str


def read_release_rows(release: ReleaseFile, teacher_names: tuple[str, ...] = (),
                      dataset_info: Location | None = None) -> list[ReleaseRow]:
    """Every row of a released file; a malformed row names the file and the row index.

    Which column is the rationale: the one `dataset_info` (or a dataset_info.json beside the file)
    names, else the teacher's own `<teacher>_output` (the MATH release, whose `output` is the
    gold), else alpaca's `output`. A file where that cannot be told is refused, naming its columns."""
    return read_release(release, teacher_names, dataset_info)[1]


def read_release(release: ReleaseFile, teacher_names: tuple[str, ...] = (),
                 dataset_info: Location | None = None) -> tuple[Columns, list[ReleaseRow]]:
    """The columns chosen for a released file (`read_release_rows`), and its rows."""
    path = release.path
    require_json_list(path, "a released file")
    records = read_records(path)
    columns = release_columns(release, records, teacher_names, dataset_info)
    rows = []
    for index, record in enumerate(records):
        try:
            rows.append(_release_row(record, columns))
        except (KeyError, ValueError) as error:
            raise DataError(f"{path}: row {index}: {error}; has fields {sorted(record)}") from None
    return columns, rows


def release_columns(release: ReleaseFile, records: list[Record], teacher_names: tuple[str, ...],
                    dataset_info: Location | None) -> Columns:
    """The file's columns, from its dataset_info entry or from the conventions (see `read_release_rows`)."""
    beside = storage.join(storage.parent(release.path), DATASET_INFO)
    info = dataset_info or (beside if location_exists(beside) and not location_is_dir(beside) else None)
    listed = dataset_info_columns(info, release.path) if info is not None else None
    if listed is not None:
        return listed
    fields = sorted({key for record in records for key in record})
    prompt = "instruction" if "instruction" in fields else "problem" if "problem" in fields else None
    if prompt is None:
        raise DataError(f"{release.path}: row 0: expected 'instruction' and 'output' (alpaca) or 'problem' and "
                        f"'<teacher>_output' (the MATH release); has fields {fields}")
    names = {name.lower() for name in (*teacher_names, release.teacher or "") if name}
    teacher_columns = [f for f in fields if f.endswith("_output") and f != "_output"]
    own = [f for f in teacher_columns if f.removesuffix("_output").lower() in names]
    gold = "label" if "label" in fields else None
    query = "input" if prompt == "instruction" and "input" in fields else None
    if len(own) == 1 or (len(teacher_columns) == 1 and prompt == "problem"):
        # the MATH release: `output` holds the gold answer, the teacher's column its CoT
        response = own[0] if own else teacher_columns[0]
        return Columns(prompt, query, response, gold or ("output" if "output" in fields else None), "conventions")
    if teacher_columns:
        raise DataError(f"{release.path}: cannot tell which column is the teacher's rationale: it has {fields}, "
                        f"and no '<teacher>_output' column for {sorted(names)}; name the teacher after its column "
                        f"(or `release_name`), or give the release's dataset_info.json (`dataset_info:`)")
    if prompt == "problem":
        return _math_label_columns(release, fields, gold)
    return Columns(prompt, query, "output", gold, "conventions")


def _math_label_columns(release: ReleaseFile, fields: list[str], gold: str | None) -> Columns:
    # the MATH release's own file: `output` is the gold, `solution` the human rationale
    if release.format == "answer_only" and "output" in fields:
        return Columns("problem", None, "output", gold or "output", "conventions")
    if release.format == "human" and "solution" in fields:
        return Columns("problem", None, "solution", gold or ("output" if "output" in fields else None), "conventions")
    raise DataError(f"{release.path}: a MATH-release file ({fields}) holds no teacher rationale for format "
                    f"{release.format}: its 'output' is the gold answer and it has no '<teacher>_output' column; "
                    f"give the release's dataset_info.json (`dataset_info:`) if another column is the rationale")


def _release_row(record: Record, columns: Columns) -> ReleaseRow:
    question = " ".join(str(record[c]).strip() for c in (columns.prompt, columns.query)
                        if c is not None and str(record.get(c, "")).strip())
    if not question:
        raise ValueError(f"no question ('{columns.prompt}' is missing or empty)")
    rationale = record.get(columns.response)
    if rationale is not None and not isinstance(rationale, str):
        raise ValueError(f"teacher output '{columns.response}' is {type(rationale).__name__} {rationale!r}, not text")
    if rationale is None or not rationale.strip():
        raise ValueError(f"no teacher output ('{columns.response}' is missing or empty)")
    gold = record.get(columns.gold) if columns.gold is not None else None
    return ReleaseRow(question, rationale.strip(), None if gold is None else str(gold))


def dataset_info_columns(info: Location, file: Location) -> Columns | None:
    """The columns a LLaMA-Factory `dataset_info.json` gives for `file` (None when it lists the
    file nowhere): `{"name": {"file_name": ..., "columns": {"prompt": ..., "query": ..., "response": ...}}}`;
    `file_name` is the file's name or its path from the dataset_info.json's folder."""
    try:
        table = json.loads(read_text(info))
    except (DataError, json.JSONDecodeError) as error:
        raise DataError(f"{info}: cannot read the dataset_info file: {error}") from None
    if not isinstance(table, dict):
        raise DataError(f"{info}: expected an object of {{name: {{file_name, columns}}}}, got {type(table).__name__}")
    found: dict[str, Columns] = {}
    for name, entry in table.items():
        if isinstance(entry, dict) and _names_file(info, entry.get("file_name"), file):
            found[name] = _info_entry_columns(info, name, entry)
    if len({(c.prompt, c.query, c.response) for c in found.values()}) > 1:
        raise DataError(f"{info}: entries {sorted(found)} give {storage.base_name(str(file))} different columns; list the file "
                        f"explicitly or give a dataset_info with one entry for it")
    return next(iter(found.values()), None)


def _names_file(info: Location, file_name: object, file: Location) -> bool:
    """An entry's `file_name` is the file's own name, or its path from the dataset_info's folder
    (LLaMA-Factory's `dataset_dir`; `cotstudy export` writes `corpora/<corpus_id>.json`)."""
    if not isinstance(file_name, str):
        return False
    if file_name == storage.base_name(str(file)):
        return True
    beside = storage.join(storage.parent(str(info)), *file_name.split("/"))
    return storage.normalize_location(beside) == storage.normalize_location(str(file))


def _info_entry_columns(info: Location, name: str, entry: dict) -> Columns:
    columns = entry.get("columns", {})
    if entry.get("formatting", "alpaca") != "alpaca" or not isinstance(columns, dict) \
            or not isinstance(columns.get("prompt"), str) or not isinstance(columns.get("response"), str):
        raise DataError(f"{info}: entry '{name}': expected alpaca columns with 'prompt' and 'response', got {entry}")
    response = columns["response"]
    gold = "output" if response != "output" else None  # the MATH release: `output` holds the gold
    return Columns(columns["prompt"], columns.get("query"), response, gold, f"{storage.base_name(str(info))} entry '{name}'")


def import_release(release: ReleaseFile | Location, dataset: str, problems: list[Problem],
                   teacher_names: tuple[str, ...] = (), dataset_info: Location | None = None
                   ) -> tuple[pd.DataFrame, ImportReport]:
    """Match each released row to a problem, score it against gold, and report the join.

    Rows are never dropped: an unmatched row is kept with `matched` False (and never counted
    correct), a question repeated in the file is kept and counted, and a question that matches
    problems with different gold answers is left unmatched rather than joined to either. A gold
    the row writes itself (MATH's `output`) is read and counted when unreadable or when it
    disagrees with the data set's."""
    release = _release_of(release, dataset)
    index, ambiguous_keys = _question_index(problems)
    records: list[dict] = []
    seen: set[str] = set()
    duplicates = ambiguous = unreadable = disagreeing = 0
    columns, rows = read_release(release, teacher_names, dataset_info)
    for row in rows:
        key = normalize_text(row.question)
        problem = index.get(key)
        ambiguous += key in ambiguous_keys
        if problem is not None:
            duplicates += problem.uid in seen
            seen.add(problem.uid)
        choices = problem.choices if problem and problem.choices else inline_choices(row.question)
        own_gold = read_gold(dataset, row.gold, choices) if row.gold is not None else None
        unreadable += row.gold is not None and own_gold is None
        disagreeing += own_gold is not None and problem is not None and not _same_gold(dataset, own_gold, problem)
        records.append(_row(dataset, release.format, row, problem, choices))
    frame = pd.DataFrame(records, columns=CORPUS_COLUMNS)
    report = ImportReport(str(release.path), len(frame), int(frame["matched"].sum()), duplicates, ambiguous,
                          int(frame["correct"].sum()), int(frame["answer"].isna().sum()), unreadable, disagreeing,
                          f"'{columns.response}' ({columns.source})")
    return frame, report


def _release_of(release: ReleaseFile | Location, dataset: str) -> ReleaseFile:
    """A path whose name says nothing of what it holds is read as a CoT file of `dataset`."""
    if isinstance(release, ReleaseFile):
        return release
    try:
        return parse_release_name(release)
    except DataError:
        return ReleaseFile(str(release), dataset, None, None, "cot")


def _same_gold(dataset: str, gold: str, problem: Problem) -> bool:
    return dataset_info_of(dataset).answers.equal(gold, problem.answer)


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


def _row(dataset: str, fmt: Format, row: ReleaseRow, problem: Problem | None, choices: tuple[Choice, ...]) -> dict:
    # a label format's text is the data set's own gold or rationale: read as a gold ("Option B")
    read = read_gold if fmt in LABEL_FORMATS else extract_answer
    answer = read(dataset, row.rationale, choices)
    return {
        "uid": problem.uid if problem else None,
        "question": problem_text(problem) if problem else row.question,
        "rationale": row.rationale,
        "answer": answer,
        "gold": problem.answer if problem else None,
        "correct": _same_gold(dataset, answer, problem) if problem and answer is not None else False,
        "matched": problem is not None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def problems_from_answer_file(dataset: str, path: Location, dataset_info: Location | None = None) -> list[Problem]:
    """Gold answers from the paper's answer-only release, for when the data set's own files are
    absent: each row's question with the gold it writes (its gold column, else its output). A
    gold that cannot be read leaves its row out, counted in one warning line."""
    release = _release_of(path, dataset)
    release = ReleaseFile(release.path, release.dataset, release.teacher, None, "answer_only")
    problems, unreadable = [], []
    rows = read_release_rows(release, (), dataset_info)
    for index, row in enumerate(rows):
        written = row.gold if row.gold is not None else row.rationale
        answer = read_gold(dataset, written, inline_choices(row.question))
        if answer is None:
            unreadable.append(written)
            continue
        problems.append(Problem(uid=f"{storage.stem(str(path))}-{index}", question=row.question, answer=answer))
    if unreadable:
        log.warning(unreadable_golds_line(path, len(unreadable), len(rows), unreadable))
    return problems


def released_corpus(key: CorpusKey, problems: list[Problem]) -> pd.DataFrame:
    """A released teacher's file for this key, matched to the training problems, with its report."""
    assert isinstance(key.teacher, ReleasedTeacher)
    release = find_release(key.teacher, key.dataset.name, key.granularity, key.format)
    frame, report = import_release(release, key.dataset.name, problems,
                                   _teacher_names(key.teacher), _info_path(key.teacher))
    if report.rows and not report.matched:
        _refuse_unmatched(release, key.dataset.name, report.rows, str(frame.loc[0, "question"]))
    log.info(f"corpus {key.name}: imported {report.line()}")
    return frame


# Every released SVAMP file of the paper matches its training questions in full (24 files,
# 699-700 rows each); a file of which most rows match nothing is another data set's.
MIN_MATCHED_SHARE = 0.5


def _refuse_unmatched(release: ReleaseFile, dataset: str, rows: int, first_question: str, matched: int = 0) -> None:
    """Some unmatched rows are counted in the import line; a file of which no row (or under half
    of its distinct questions) matches is the wrong file (or the wrong data set files or split),
    so it is refused."""
    which = (f"none of its {rows} rows matches" if not matched else
             f"only {matched} of its {rows} distinct questions match")
    raise DataError(f"{release.path}: {which} a training question of '{dataset}' (first: {first_question[:80]!r}); "
                    f"is it this data set's release, and are the data set's files (and split) the ones the release "
                    f"was made from?")


def _teacher_names(teacher: ReleasedTeacher) -> tuple[str, ...]:
    return tuple(name for name in (teacher.name, teacher.release_name) if name)


def _info_path(teacher: ReleasedTeacher) -> str | None:
    return teacher.dataset_info


class ReleasedKind(TeacherKind[ReleasedTeacher]):
    source = "imported"

    def check(self, teacher: ReleasedTeacher, keys: list[CorpusKey]) -> None:
        """Each corpus's file is found, read and matched now, so a bad row, an ambiguous column or a
        file of another data set stops the study before it starts."""
        for key in keys:
            release = find_release(teacher, key.dataset.name, key.granularity, key.format)
            rows = read_release_rows(release, _teacher_names(teacher), _info_path(teacher))
            index, _ = _question_index(load_split(key.dataset, "train"))
            questions = {normalize_text(row.question) for row in rows}  # a repeated row counts once
            matched = len(questions & index.keys())
            if rows and matched < MIN_MATCHED_SHARE * len(questions):
                _refuse_unmatched(release, key.dataset.name, len(rows) if not matched else len(questions),
                                  rows[0].question, matched)

    def training_texts(self, key: CorpusKey) -> list[str]:
        assert isinstance(key.teacher, ReleasedTeacher)
        release = find_release(key.teacher, key.dataset.name, key.granularity, key.format)
        rows = read_release_rows(release, _teacher_names(key.teacher), _info_path(key.teacher))
        return [training_text(key.dataset.name, row.question, row.rationale) for row in rows]

    def offline_corpus(self, key: CorpusKey, problems: list[Problem]) -> pd.DataFrame:
        return released_corpus(key, problems)


KIND = ReleasedKind()
