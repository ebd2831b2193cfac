"""A study's inputs travel with it: its splits are stored in the study folder (checksummed) and
read from there, the frozen spec names data relative to the data folder, a data folder may be a
URI, and `resume` rebuilds a lost input only from --data-dir. (The whole path through Ray, with
the data folder renamed before `resume`, is test_end_to_end's real-SVAMP study.)"""

from __future__ import annotations

import pytest
import yaml
from conftest import small_spec, write_spec

from study.core import storage
from study.core.cells import expand_grid
from study.core.datasets import DatasetSpec, load_split
from study.core.spec import load_spec, spec_to_yaml
from study.core.storage import ChecksumError, StudyPaths
from study.core.stored_splits import missing_splits, store_splits, stored_split
from study.run.cli import main
from study.run.inputs import check_inputs
from study.run.studies import open_study, prepare_storage

RELEASED = {"kind": "released", "name": "chatgpt", "release_name": "ChatGPT",
            "files": ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"]}


def _svamp_spec(tmp_path, data_dir, **overrides):
    raw = small_spec(tmp_path / "out", name="svamp-inputs", datasets=[{"name": "svamp"}], teachers=[RELEASED],
                     granularities=[1], formats=["cot", "answer_only"], **overrides)
    return load_spec(write_spec(tmp_path / "spec.yaml", raw), data_dir=str(data_dir))


def test_splits_are_stored_with_the_study_and_read_back_verified(tmp_path, shared_data, capsys):
    paths = StudyPaths(str(tmp_path / "study"))
    arith = DatasetSpec(name="arith", arith={"n_train": 20, "n_test": 5})
    svamp = DatasetSpec(name="svamp", path=str(shared_data / "svamp"))
    store_splits(paths, [arith, svamp])
    for dataset in (arith, svamp):
        for split in ("train", "test"):
            assert stored_split(paths, dataset, split) == load_split(dataset, split)  # steps and all
    assert len(stored_split(paths, svamp, "train")) == 700 and stored_split(paths, arith, "test")[0].steps

    location = paths.split("svamp", "test")
    storage.write_bytes_atomic(location, storage.read_bytes(location)[:500])
    with pytest.raises(ChecksumError, match="corrupted or truncated"):
        stored_split(paths, svamp, "test")
    assert missing_splits(paths, [arith, svamp]) == [svamp]
    assert f"data svamp: {location}: corrupted or truncated" in capsys.readouterr().out  # and moved aside
    store_splits(paths, [arith, svamp])
    assert len(stored_split(paths, svamp, "test")) == 300


def test_the_frozen_spec_names_data_relative_to_the_data_folder(tmp_path, shared_data):
    spec = _svamp_spec(tmp_path, shared_data)
    paths, cells = prepare_storage(spec)
    text = storage.read_text(paths.spec)
    assert str(shared_data) not in text and str(tmp_path / "spec.yaml") not in text
    frozen = yaml.safe_load(text)
    assert frozen["data_dir"] is None and frozen["datasets"][0]["path"] == "svamp"
    assert frozen["teachers"][0]["files"] == ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"]

    reopened, _ = open_study(paths.root)  # status and resume: no data folder needed, same cells
    assert reopened.data_dir is None and [c.cell_id for c in expand_grid(reopened)] == [c.cell_id for c in cells]
    moved, _ = open_study(paths.root, data_dir=str(tmp_path / "elsewhere"))  # resume --data-dir
    assert moved.datasets[0].path == str(tmp_path / "elsewhere" / "svamp")
    assert moved.teachers[0].files == [str(tmp_path / "elsewhere" / "svamp/cot/SVAMP_ChatGPT_level1_ranked.json")]


def test_a_study_frozen_with_absolute_paths_moves_with_data_dir(tmp_path, shared_data):
    """Studies frozen before their data was stored name the launching machine's folders."""
    spec = _svamp_spec(tmp_path, shared_data)
    paths = StudyPaths.of(spec.storage, spec.name)
    storage.write_text_atomic(paths.spec, spec_to_yaml(spec))
    assert open_study(paths.root)[0].datasets[0].path == str(shared_data / "svamp")  # as before
    moved, _ = open_study(paths.root, data_dir=str(tmp_path / "copy"))
    assert moved.datasets[0].path == str(tmp_path / "copy" / "svamp")
    assert moved.teachers[0].files == [str(tmp_path / "copy" / "svamp/cot/SVAMP_ChatGPT_level1_ranked.json")]


def test_a_data_folder_may_be_a_file_uri(tmp_path, shared_data):
    spec = _svamp_spec(tmp_path, f"file://{shared_data}")
    assert spec.datasets[0].path == f"file://{shared_data}/svamp"
    check_inputs(spec)  # the data set's files and the released file, found and read through the URI
    assert len(load_split(spec.datasets[0], "test")) == 300
    paths, _ = prepare_storage(spec)
    assert yaml.safe_load(storage.read_text(paths.spec))["data_dir"] == f"file://{shared_data}"  # a URI is kept


def test_resume_without_a_data_folder_refuses_to_rebuild_lost_splits(tmp_path, shared_data, capsys):
    spec = _svamp_spec(tmp_path, shared_data)
    paths, _ = prepare_storage(spec)
    store_splits(paths, spec.datasets)
    storage.delete_file(paths.split("svamp", "train"))
    assert main(["resume", paths.root]) == 2
    err = capsys.readouterr().err
    assert "the splits of 'svamp'" in err and "--data-dir" in err and err.count("error: ") == 1
    assert not storage.exists(paths.lock) and not storage.exists(paths.tune), "nothing started"
