"""Where a study's files live, on a local folder or any pyarrow filesystem URI (s3://, gs://...).

The layout (design.md):
    <storage>/<study>/spec.yaml, prompts/<teacher>.yaml, corpora/<corpus_id>.parquet, tokenizer/, tune/,
    cells/<cell_id>/{result.json, predictions.parquet, error.txt, train/}, results.parquet, figures/
Writes that mark something done are atomic: write a temporary file, then move it into place.
Corpora and cell results also get a checksum at write (`<file>.sha256`, sha256sum's format),
verified on every read: a truncated or corrupted file raises ChecksumError, never reaches a reader.
"""

from __future__ import annotations

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
    storage paths)."""
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    base, query = _split_query(location)
    return base.rstrip("/") + query


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        try:
            return pafs.FileSystem.from_uri(location)
        except ValueError as error:  # pyarrow.ArrowInvalid: a scheme no pyarrow filesystem handles
            raise OSError(f"{location}: not a storage location pyarrow can open ({error})") from None
    return pafs.LocalFileSystem(), normalize_location(location)


def join(location: str, *parts: str) -> str:
    """Path parts appended to a folder; a URI's query (`s3://b/p?endpoint_override=...`) stays last."""
    base, query = _split_query(location)
    return "/".join([base.rstrip("/"), *parts]) + query


def sibling(location: str, suffix: str) -> str:
    """`<file><suffix>` beside a file."""
    base, query = _split_query(location)
    return base + suffix + query


def base_name(location: str) -> str:
    """The last path part."""
    return _split_query(location)[0].rstrip("/").rsplit("/", 1)[-1]


def parent(location: str) -> str:
    """The folder holding a location."""
    base, query = _split_query(location)
    return base.rstrip("/").rsplit("/", 1)[0] + query


def exists(location: str) -> bool:
    fs, path = _filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(location: str, suffix: str = "") -> list[str]:
    """Files directly in a folder whose names end with `suffix`, sorted; [] if the folder is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(info.base_name for info in infos if info.type == pafs.FileType.File and info.base_name.endswith(suffix))
    return [join(location, name) for name in names]


def files_named(location: str, name: str) -> list[str]:
    """Every file called `name` anywhere under a folder, sorted; [] if the folder is absent."""
    fs, path = _filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    found = sorted(info.path for info in infos if info.type == pafs.FileType.File and info.base_name == name)
    return [join(location, *found_path[len(path):].strip("/").split("/")) for found_path in found]


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


def make_dirs(location: str) -> None:
    fs, path = _filesystem(location)
    fs.create_dir(path, recursive=True)


def write_bytes_atomic(location: str, data: bytes) -> None:
    """Write to a temporary sibling, then move into place: readers never see a partial file."""
    fs, path = _filesystem(location)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(temporary) as stream:
        stream.write(data)
    fs.move(temporary, path)


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


def check_writable(location: str) -> None:
    """Raise OSError naming the location when a probe file cannot be written there."""
    probe = join(location, f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        write_bytes_atomic(probe, b"ok")
        fs, path = _filesystem(probe)
        fs.delete_file(path)
    except OSError as error:
        raise OSError(f"storage '{location}' is not writable: {error}") from None


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

    def corpus(self, corpus_id: str) -> str:
        return join(self.root, "corpora", f"{corpus_id}.parquet")

    def corpus_card(self, corpus_id: str) -> str:
        """Usage, cost and quality of a generated corpus (JSON beside the corpus)."""
        return join(self.root, "corpora", f"{corpus_id}.json")

    def generation_shards(self, corpus_id: str) -> str:
        """Teacher replies saved as they arrive, while a corpus is generated."""
        return join(self.root, "generation", corpus_id)

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
        """The trained student in Hugging Face format (trainables/export.py)."""
        return join(self.cell_dir(cell_id), "model")

    def cell_checkpoints(self, cell_id: str) -> str:
        """The cell's Ray Train run: checkpoint_*/trainer_state.pt (trainables/checkpoints.py)."""
        return join(self.cell_dir(cell_id), "train")
