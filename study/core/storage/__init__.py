"""Where a study's files live, on a local folder or any pyarrow filesystem URI (s3://, gs://...).

Also how every file the project reads is reached: the data sets' source files and released
teacher files are read through the same functions, so a data folder may be a URI too. This is its
own folder below `study.core.datasets` (it imports nothing of the project), so the data set
readers can use it.

The layout (design.md):
    <storage>/<study>/spec.yaml, prompts/<teacher>.yaml, data/<dataset>/{train,test}.jsonl,
    corpora/<corpus_id>.parquet, tokenizer/, tune/,
    teacher_logits/<id>.{npz,json} (offline kd),
    cells/<cell_id>/{result.json, predictions.parquet, error.txt, train/}, results.parquet, figures/
Writes that mark something done are atomic: write a temporary file, then move it into place.
Stored splits, corpora and cell results also get a checksum at write (`<file>.sha256`, sha256sum's format),
verified on every read: a truncated or corrupted file raises ChecksumError, never reaches a reader.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.core.storage.files import InputError


class StorageError(InputError):
    """A storage location that is not one: blank, blanks around it, or `~user` of no user."""


def is_uri(location: str) -> bool:
    return "://" in location


def _split_query(location: str) -> tuple[str, str]:
    """A URI's path part and its query (`?endpoint_override=...`, kept for pyarrow); local paths
    have none."""
    if not is_uri(location):
        return location, ""
    base, separator, query = location.partition("?")
    return base, separator + query


def normalize_location(location: str) -> str:
    """URIs lose a trailing slash (a query stays); local paths become absolute (Ray needs absolute
    storage paths), `~` expanded. A blank location is refused, never taken for the current folder."""
    if not location.strip() or location != location.strip():
        raise StorageError(f"storage location {location!r}: give a folder or URI, without blanks around it")
    if not is_uri(location):
        try:
            return str(Path(location).expanduser().resolve())
        except RuntimeError:  # ~user of no user: pathlib finds no home folder
            raise StorageError(f"{location}: no such user's home folder") from None
    base, query = _split_query(location)
    return base.rstrip("/") + query


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        try:
            return pafs.FileSystem.from_uri(location)
        except (ValueError, NotImplementedError) as error:  # ArrowInvalid / ArrowNotImplementedError: no such filesystem
            raise OSError(f"{location}: not a storage location pyarrow can open ({error})") from None
        except OSError as error:  # e.g. S3 finding a bucket's region: name the location, not only the bucket
            raise OSError(f"{location}: {error}") from None
    return pafs.LocalFileSystem(), normalize_location(location)


def join(location: str, *parts: str) -> str:
    """Path parts appended to a folder; a URI's query (`s3://b/p?endpoint_override=...`) stays last."""
    base, query = _split_query(location)
    return "/".join([base.rstrip("/"), *parts]) + query


def sibling(location: str, suffix: str) -> str:
    """`<file><suffix>` beside a file."""
    base, query = _split_query(location)
    return base + suffix + query


def relative_to(location: str, folder: str) -> str | None:
    """`location`'s path below `folder` (`a/b.json`), or None when it is not below it. A URI's
    query is ignored; a local path is compared as given (both are absolute where this is used)."""
    base, _ = _split_query(location)
    folder_base, _ = _split_query(folder)
    prefix = folder_base.rstrip("/") + "/"
    return base[len(prefix):] if base.startswith(prefix) and len(base) > len(prefix) else None


def base_name(location: str) -> str:
    """The last path part."""
    return _split_query(location)[0].rstrip("/").rsplit("/", 1)[-1]


def parent(location: str) -> str:
    """The folder holding a location (`.` for a bare local file name)."""
    base, query = _split_query(location)
    base = base.rstrip("/")
    return (base.rsplit("/", 1)[0] if "/" in base else ".") + query


def exists(location: str) -> bool:
    fs, path = _filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(location: str) -> bool:
    fs, path = _filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def stem(location: str) -> str:
    """The last path part without its extension (`.../SVAMP.json` -> `SVAMP`)."""
    name = base_name(location)
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def files_under(location: str, suffix: str = "") -> list[str]:
    """Files anywhere below a folder whose names end with `suffix`, sorted by path."""
    fs, path = _filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    relative = sorted(info.path[len(path.rstrip("/")) + 1:] for info in infos
                      if info.type == pafs.FileType.File and info.base_name.endswith(suffix))
    return [join(location, name) for name in relative]


def glob_files(pattern: str) -> list[str]:
    """Files matching a glob, sorted; as `glob.glob` does (a wildcard never crosses a `/`), also for
    a URI, whose folder before the first wildcard is listed and matched part by part."""
    if not is_uri(pattern):
        return sorted(path for path in glob.glob(pattern) if not Path(path).is_dir())
    base, query = _split_query(pattern)
    wildcard = min((base.find(c) for c in "*?[" if c in base), default=len(base))
    folder = base[:wildcard].rsplit("/", 1)[0]
    if wildcard == len(base):
        return [pattern] if exists(pattern) and not is_dir(pattern) else []
    wanted = base.split("/")
    found = files_under(folder + query) if is_dir(folder + query) else []
    return [location for location in found if _parts_match(_split_query(location)[0].split("/"), wanted)]


def _parts_match(parts: list[str], wanted: list[str]) -> bool:
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def list_files(location: str, suffix: str = "") -> list[str]:
    """Files directly in a folder whose names end with `suffix`, sorted; [] if the folder is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(info.base_name for info in infos if info.type == pafs.FileType.File and info.base_name.endswith(suffix))
    return [join(location, name) for name in names]


def find_files(location: str, name: str) -> list[str]:
    """Files named `name` anywhere under a folder, sorted; [] if the folder is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    found = sorted(info.path for info in infos if info.type == pafs.FileType.File and info.base_name == name)
    return [join(location, *found_path[len(path):].strip("/").split("/")) for found_path in found]


def list_dirs(location: str, prefix: str = "") -> list[str]:
    """Folders directly in a folder whose names start with `prefix`, sorted; [] if it is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix))
    return [join(location, name) for name in names]


def is_empty_or_absent(location: str) -> bool:
    """Nothing is at `location`, or it is an empty folder."""
    fs, path = _filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return True
    return info.type == pafs.FileType.Directory and not fs.get_file_info(pafs.FileSelector(path))


def delete_file(location: str) -> None:
    fs, path = _filesystem(location)
    fs.delete_file(path)


def holds_files(location: str) -> bool:
    """Whether a folder (at any depth) holds a file; False when it does not exist."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return fs.get_file_info(path).type == pafs.FileType.File
    return any(info.type == pafs.FileType.File for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)))


def entry_names(location: str) -> list[str]:
    """Names of the files and folders directly in a folder, sorted; [] if it is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(path)))


def delete_dir(location: str) -> None:
    fs, path = _filesystem(location)
    fs.delete_dir(path)


def make_dirs(location: str) -> None:
    fs, path = _filesystem(location)
    fs.create_dir(path, recursive=True)


def write_bytes_atomic(location: str, data: bytes) -> None:
    """Write to a temporary sibling, then move into place: readers never see a partial file."""
    fs, path = _filesystem(location)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(temporary) as stream:
            stream.write(data)
        fs.move(temporary, path)
    except BaseException:  # a full disk, a lost connection, Ctrl-C: no temporary file left behind
        _delete_quietly(fs, temporary)
        raise


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    except OSError:
        pass  # the storage is failing already; the write's own error is the one to report


def write_text_atomic(location: str, text: str) -> None:
    write_bytes_atomic(location, text.encode())


def read_bytes(location: str) -> bytes:
    fs, path = _filesystem(location)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: str) -> str:
    return read_bytes(location).decode()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _parquet_frame(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def write_parquet_atomic(location: str, frame: pd.DataFrame) -> None:
    write_bytes_atomic(location, _parquet_bytes(frame))


def read_parquet(location: str) -> pd.DataFrame:
    return _parquet_frame(read_bytes(location))


CHECKSUM_SUFFIX = ".sha256"


class ChecksumError(ValueError):
    """A file that is not what was written: its sha256 differs from the one recorded at write, or
    no checksum was recorded. The message names the file."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location


def write_bytes_checked(location: str, data: bytes) -> None:
    """The checksum first, then the file (both atomic): a file present is always covered by one."""
    write_text_atomic(sibling(location, CHECKSUM_SUFFIX), f"{hashlib.sha256(data).hexdigest()}  {base_name(location)}\n")
    write_bytes_atomic(location, data)


def read_bytes_checked(location: str) -> bytes:
    data = read_bytes(location)
    checksum = sibling(location, CHECKSUM_SUFFIX)
    if not exists(checksum):
        raise ChecksumError(location, f"no checksum recorded ({base_name(checksum)} is missing), so it cannot be trusted")
    recorded = read_text(checksum).split()[0]
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise ChecksumError(location, f"corrupted or truncated: {len(data)} bytes with sha256 {actual[:16]}..., "
                                      f"but {recorded[:16]}... was recorded when it was written")
    return data


def verify_checksum(location: str) -> ChecksumError | None:
    """None when the file matches its recorded checksum, else the error (the file must exist)."""
    try:
        read_bytes_checked(location)
    except ChecksumError as error:
        return error
    return None


def write_parquet_checked(location: str, frame: pd.DataFrame) -> None:
    write_bytes_checked(location, _parquet_bytes(frame))


def read_parquet_checked(location: str) -> pd.DataFrame:
    return _parquet_frame(read_bytes_checked(location))


def quarantine(location: str) -> str:
    """Move a corrupted file aside (`<file>.corrupt-<unix time>`, kept for inspection) so that
    whatever needs it is rebuilt; its checksum goes with it. Returns the new location."""
    fs, path = _filesystem(location)
    suffix = f".corrupt-{int(time.time())}"
    fs.move(path, path + suffix)
    if exists(sibling(location, CHECKSUM_SUFFIX)):
        fs.move(path + CHECKSUM_SUFFIX, path + suffix + CHECKSUM_SUFFIX)
    return sibling(location, suffix)


def intact(location: str, what: str) -> bool:
    """Whether a checksummed file is there and matches its checksum. A corrupted one is reported
    (`what` names it), moved aside (`quarantine`) and counted as absent, so that it is built again."""
    if not exists(location):
        return False
    error = verify_checksum(location)
    if error is None:
        return True
    print(f"{what}: {error}; moved to {quarantine(location)}, building it again", flush=True)
    return False


def download_dir(location: str, local_dir: Path) -> Path:
    fs, path = _filesystem(location)
    local_dir.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local_dir


def upload_dir(local_dir: Path, location: str) -> None:
    fs, path = _filesystem(location)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local_dir), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def produce_at(location: str, produce: Callable[[Path], list[Path]]) -> list[str]:
    """The files `produce` writes into a local folder, put at `location`: that folder itself when
    it is local; for a URI, a scratch folder uploaded there afterwards (so a figure of
    s3://b/study never lands in a local folder named `s3:`). Returns where the files are."""
    if not is_uri(location):
        return [str(path) for path in produce(Path(location))]
    with tempfile.TemporaryDirectory() as scratch:
        written = produce(Path(scratch))
        upload_dir(Path(scratch), location)
    return [join(location, *path.relative_to(scratch).parts) for path in written]


def check_output_folder(location: str, what: str = "--out") -> None:
    """Before anything is computed: an output folder that is a file (or no location) is refused
    naming it, not found out after the work is done."""
    normalized = normalize_location(location)
    if not is_uri(location) and Path(normalized).exists() and not Path(normalized).is_dir():
        raise StorageError(f"{what} {location}: is a file, not a folder")


WRITE_PROBE_PREFIX = ".write-probe-"


def check_writable(location: str) -> None:
    """Raise OSError naming the location when a probe file cannot be written there."""
    probe = join(location, f"{WRITE_PROBE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        write_bytes_atomic(probe, b"ok")
        fs, path = _filesystem(probe)
        fs.delete_file(path)
    except OSError as error:
        raise OSError(f"storage '{location}' is not writable: {error}") from None


OPTIMIZER_STATE_FILE = "optimizer_state.pt"


@dataclass(frozen=True)
class StudyPaths:
    """The one place that knows the storage layout of a study."""

    root: str

    @classmethod
    def of(cls, storage: str, study_name: str) -> StudyPaths:
        return cls(join(normalize_location(storage), study_name))

    @property
    def spec(self) -> str:
        return join(self.root, "spec.yaml")

    def prompt_library(self, teacher_name: str) -> str:
        """A teacher's own prompt library, frozen at `run` beside the frozen spec."""
        return join(self.root, self.prompt_library_name(teacher_name))

    @staticmethod
    def prompt_library_name(teacher_name: str) -> str:
        """The same, relative to the study folder: how the frozen spec names it, so the folder can move."""
        return f"prompts/{teacher_name}.yaml"

    def in_study(self, location: str) -> str:
        """A location the frozen spec gives relative to the study folder, made absolute; an absolute
        one stays (a study frozen before its prompts were names the original file)."""
        return location if is_uri(location) or Path(location).is_absolute() else join(self.root, location)

    @property
    def lock(self) -> str:
        """Held by the one driver running or resuming the study (study.run.studies.study_lock)."""
        return join(self.root, "lock.json")

    @property
    def tokenizer(self) -> str:
        return join(self.root, "tokenizer")

    @property
    def tune(self) -> str:
        return join(self.root, "tune")

    @property
    def results(self) -> str:
        return join(self.root, "results.parquet")

    @property
    def figures(self) -> str:
        return join(self.root, "figures")

    def split(self, dataset_name: str, split: str) -> str:
        """A data set's train or test problems, stored at `run` (study.core.stored_splits)."""
        return join(self.root, "data", dataset_name, f"{split}.jsonl")

    def corpus(self, corpus_id: str) -> str:
        return join(self.root, "corpora", f"{corpus_id}.parquet")

    def corpus_card(self, corpus_id: str) -> str:
        """Usage, cost and quality of a generated corpus (JSON beside the corpus)."""
        return join(self.root, "corpora", f"{corpus_id}.json")

    def generation_shards(self, corpus_id: str) -> str:
        """Teacher replies saved as they arrive, while a corpus is generated."""
        return join(self.root, "generation", corpus_id)

    def teacher_logits(self, logits_id: str) -> str:
        """A kd teacher's top-k log-probs over one cell's examples (trainables/kd.py)."""
        return join(self.root, "teacher_logits", f"{logits_id}.npz")

    def teacher_logits_card(self, logits_id: str) -> str:
        """What those log-probs are: teacher, corpus, k, size, the forward passes that made them."""
        return join(self.root, "teacher_logits", f"{logits_id}.json")

    def cell_dir(self, cell_id: str) -> str:
        return join(self.root, "cells", cell_id)

    def cell_result(self, cell_id: str) -> str:
        return join(self.cell_dir(cell_id), "result.json")

    def cell_predictions(self, cell_id: str) -> str:
        return join(self.cell_dir(cell_id), "predictions.parquet")

    def cell_attempt(self, cell_id: str) -> str:
        """Present while an attempt at the cell runs (its start time)."""
        return join(self.cell_dir(cell_id), "attempt.txt")

    def cell_error(self, cell_id: str) -> str:
        return join(self.cell_dir(cell_id), "error.txt")

    def cell_model(self, cell_id: str) -> str:
        """The trained student in Hugging Face format (trainables/export.py); a two-model cell's in
        <role>/ folders in it."""
        return join(self.cell_dir(cell_id), "model")

    def cell_checkpoints(self, cell_id: str) -> str:
        """The cell's Ray Train run: checkpoint_<time>/<role>/ folders (one per model the cell trains:
        student, or decomposer and solver) of trainer_state.pt (the trained weights, schedule and
        counters) and OPTIMIZER_STATE_FILE (deleted once the cell's result is written)."""
        return join(self.cell_dir(cell_id), "train")
