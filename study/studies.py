"""A study's folder in storage: creating it for a run, opening it for resume and status.

No Ray here, so `cotstudy status` stays fast.
"""

from __future__ import annotations

from study import storage
from study.cells import Cell, expand_grid
from study.spec import StudySpec, parse_spec_text, spec_to_yaml
from study.storage import StudyPaths


class StudyError(RuntimeError):
    """A study that cannot start (storage, a changed spec, not a study folder); nothing was run."""


def prepare_storage(spec: StudySpec) -> tuple[StudyPaths, list[Cell]]:
    """Check storage is writable and freeze the spec there; refuse a spec whose cells changed."""
    paths = StudyPaths.of(spec.storage, spec.name)
    try:
        storage.check_writable(paths.root)
    except OSError as error:
        raise StudyError(f"storage: {error}") from None
    cells = expand_grid(spec)
    if storage.exists(paths.spec):
        stored = parse_spec_text(storage.read_text(paths.spec), paths.spec)
        if {c.cell_id for c in expand_grid(stored)} != {c.cell_id for c in cells}:
            raise StudyError(
                f"{paths.spec}: study '{spec.name}' already exists with different cells; "
                "give the study a new name, or resume it with 'cotstudy resume'"
            )
    storage.write_text_atomic(paths.spec, spec_to_yaml(spec))
    return paths, cells


def open_study(study_dir: str) -> tuple[StudySpec, StudyPaths]:
    """The frozen spec of an existing study folder, with storage set to where the folder is."""
    paths = StudyPaths(storage.normalize_location(study_dir).rstrip("/"))
    if not storage.exists(paths.spec):
        raise StudyError(f"{study_dir}: not a study folder (no spec.yaml)")
    spec = parse_spec_text(storage.read_text(paths.spec), paths.spec)
    return spec.model_copy(update={"storage": paths.root.rsplit("/", 1)[0]}), paths
