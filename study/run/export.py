"""Taking results out of a study: one trained student, or the study's data.

    cotstudy export-student STUDY_DIR CELL --out DIR [--merge] [--push-to-hub REPO]
        CELL is a cell id or name (`cotstudy status` / `plan` print both). DIR gets the cell's
        cells/<id>/model folder (trainables/export.py): load it with
        AutoModelForCausalLM.from_pretrained(DIR) (a LoRA student: PeftModel.from_pretrained, or
        --merge for a plain model); a two-model socratic cell's models are DIR/decomposer and
        DIR/solver; --push-to-hub uploads DIR to a Hugging Face model repo (HF_TOKEN from the
        environment).
    cotstudy export STUDY_DIR --format alpaca | sharegpt | llamafactory | hf --out DIR
        the corpora and test splits (study/run/data_export.py).

Bad input (no such study or cell, a cell that did not finish or has no saved student, an --out
that exists and is not empty) is one `ExportError` naming it, before anything is written (exit 2).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from study.core import storage
from study.core.cells import Cell, expand_grid
from study.core.results import cell_states
from study.run.data_export import EXPORT_FORMATS, study_tables, write_tables
from study.run.studies import StudyError, open_study

EXPORT_COMMANDS = ("export-student", "export")


class ExportError(ValueError):
    """An export that cannot be made as asked; the message names what; nothing was written."""


def add_export_commands(commands: argparse._SubParsersAction) -> None:
    student = commands.add_parser("export-student", help="copy one cell's trained student out (Hugging Face format)")
    student.add_argument("study_dir", help="<storage>/<study name>")
    student.add_argument("cell", help="the cell's id or name")
    student.add_argument("--out", required=True, help="a local folder that does not exist yet, or is empty")
    student.add_argument("--merge", action="store_true",
                         help="a LoRA student: write the adapters merged into the base (a plain model)")
    student.add_argument("--push-to-hub", metavar="REPO", help="also upload --out to this Hugging Face model repo")
    data = commands.add_parser("export", help="write the study's corpora and test splits for other tools")
    data.add_argument("study_dir", help="<storage>/<study name>")
    data.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                      help="alpaca / sharegpt JSON lists, llamafactory (alpaca + dataset_info.json), hf (save_to_disk)")
    data.add_argument("--out", required=True, help="a folder (or URI) that does not exist yet, or is empty")


def run_export_command(args: argparse.Namespace) -> int:
    """0 when written; 2 for bad input (nothing written); 1 when the hub upload failed (the local copy stays)."""
    try:
        if args.command == "export":
            export_data(args.study_dir, args.format, args.out)
            return 0
        export_student(args.study_dir, args.cell, Path(args.out), args.merge)
    except (ExportError, StudyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        return push_to_hub(Path(args.out), args.push_to_hub)
    return 0


def _require_empty(out: str) -> None:
    try:
        empty = storage.is_empty_or_absent(out)
    except OSError as error:
        raise ExportError(f"--out {out}: {error}") from None
    if not empty:
        raise ExportError(f"--out {out}: exists and is not empty; give a new folder (nothing was written)")


def find_cell(cells: list[Cell], reference: str, study_dir: str) -> Cell:
    found = [cell for cell in cells if reference in (cell.cell_id, cell.name)]
    if not found:
        names = ", ".join(cell.name for cell in cells[:5]) + (", ..." if len(cells) > 5 else "")
        raise ExportError(f"{study_dir}: no cell with id or name '{reference}'; its cells: {names}")
    return found[0]


def finished_model(study_dir: str, reference: str) -> tuple[Cell, str]:
    """The cell and where its student is; an ExportError unless it finished and saved one."""
    spec, paths = open_study(study_dir)
    cell = find_cell(expand_grid(spec), reference, study_dir)
    (state,) = cell_states(paths, [cell])
    if state.state != "done":
        why = f": {state.error.strip().splitlines()[-1]}" if state.state == "failed" and state.error else ""
        raise ExportError(f"cell {cell.name} [{cell.cell_id}] is {state.state}{why}; only a finished cell has a "
                          f"trained student (cotstudy status {study_dir})")
    model = paths.cell_model(cell.cell_id)
    if not storage.exists(model):
        raise ExportError(f"cell {cell.name} [{cell.cell_id}] finished before students were saved (no {model}); "
                          f"run the cell again in a new study to get one")
    return cell, model


def export_student(study_dir: str, reference: str, out: Path, merge: bool) -> None:
    """Copy the cell's saved student to `out` (with --merge, a LoRA student merged into its base);
    a two-model cell's models each into `out/<role>/`, as the cell saved them."""
    cell, model = finished_model(study_dir, reference)
    _require_empty(str(out))
    with tempfile.TemporaryDirectory() as scratch:
        saved = storage.download_dir(model, Path(scratch) / "model")
        for folder in _saved_models(saved):
            _copy_model(cell, folder, out / folder.relative_to(saved), merge)
    print(f"student of {cell.name} [{cell.cell_id}]: {out}")


def _saved_models(saved: Path) -> list[Path]:
    """The models in a cell's model folder: the folder itself, or (a method that trains two
    models: trainables.export.role_folder) one folder per role."""
    from trainables.export import is_adapter

    if (saved / "config.json").is_file() or is_adapter(saved):
        return [saved]
    return sorted(folder for folder in saved.iterdir() if folder.is_dir())


def _copy_model(cell: Cell, saved: Path, out: Path, merge: bool) -> None:
    from trainables.export import MERGED_FOLDER, is_adapter, merge_adapters, point_adapter_at_base

    if merge and is_adapter(saved):
        merged = saved / MERGED_FOLDER
        if merged.is_dir():  # export.merge: true wrote it after evaluation
            shutil.copytree(merged, out, dirs_exist_ok=True)
        else:
            merge_adapters(saved, out)
        return
    if merge:
        print(f"cell {cell.name}: a full fine-tune has no adapters to merge; copied as it is")
    shutil.copytree(saved, out, dirs_exist_ok=True)
    point_adapter_at_base(out)


def export_data(study_dir: str, fmt: str, out: str) -> list[str]:
    """Every built corpus and each data set's test split in `fmt` at `out` (a folder or URI)."""
    spec, paths = open_study(study_dir)
    _require_empty(out)
    tables, unbuilt = study_tables(spec, paths)
    if not tables:
        raise ExportError(f"{study_dir}: no corpus is built yet (cotstudy run builds them first); nothing was written")
    written = storage.produce_at(out, lambda folder: write_tables(tables, fmt, folder))  # type: ignore[arg-type]
    for key in unbuilt:
        print(f"not built yet, left out: corpus {key.name}")
    print(f"{len(tables) - len(spec.datasets)} corpora and {len(spec.datasets)} test splits ({fmt}) in {out}")
    return written


def push_to_hub(folder: Path, repo: str) -> int:
    """Upload an exported student to a Hugging Face model repo (created private if absent)."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, private=True, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as error:  # no token, no network, no rights: the hub client's own errors
        print(f"error: --push-to-hub {repo}: {error}; the exported copy is in {folder}", file=sys.stderr)
        return 1
    print(f"pushed to https://huggingface.co/{repo}")
    return 0
