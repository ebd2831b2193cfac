"""Bad input through the CLI: each case is one clear error naming the field or file, exit code 2,
and nothing written to storage. (Spec-schema cases already in test_spec.py, data-file cases in
test_sources.py / test_inputs.py are not repeated here.)"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from conftest import small_spec, write_spec

from study.run.cli import main

GSM_ROW = b'{"question": "Tom has 3 apples and buys 1. How many?", "answer": "3 + 1 = 4 #### 4"}\n'


def _fails(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI; it must return 2 with one error (argparse prints its usage above it; a YAML
    error quotes the offending line below it). Returns the error from "error: " on."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1, err
    message = err[err.index("error: "):].strip()
    for text in expected:
        assert text in message, message
    return message


def _spec(tmp_path: Path, **overrides: object) -> str:
    return str(write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", **overrides)))


@pytest.fixture
def nothing_written(tmp_path):
    yield
    assert not (tmp_path / "out").exists(), "bad input must write nothing to storage"


# --- flags and commands -------------------------------------------------------------------------

def test_unknown_flag(tmp_path, capsys, nothing_written):
    _fails(capsys, ["run", _spec(tmp_path), "--colour", "blue"], "unrecognized arguments: --colour blue")


def test_missing_spec_argument(capsys):
    _fails(capsys, ["run"], "the following arguments are required: spec")


def test_unknown_command(tmp_path, capsys, nothing_written):
    _fails(capsys, ["train", _spec(tmp_path)], "invalid choice: 'train'")


def test_corpus_stats_with_both_a_spec_and_files(tmp_path, capsys, nothing_written):
    _fails(capsys, ["corpus-stats", _spec(tmp_path), "--files", "x*.json", "--out", str(tmp_path / "out")],
           "takes a spec or --files GLOB..., not both")


def test_serve_teacher_names_no_teacher_of_the_spec(tmp_path, capsys, nothing_written):
    _fails(capsys, ["serve-teacher", _spec(tmp_path), "nobody"], "no teacher named 'nobody'", "['program']")


def test_storage_flag_pointing_at_a_file(tmp_path, capsys):
    (tmp_path / "results").write_text("a file, not a folder")
    _fails(capsys, ["run", _spec(tmp_path), "--storage", str(tmp_path / "results")],
           f"storage '{tmp_path / 'results' / 'small'}' is not writable")
    assert (tmp_path / "results").read_text() == "a file, not a folder"


def test_storage_with_a_scheme_no_filesystem_handles(tmp_path, capsys, nothing_written):
    _fails(capsys, ["run", _spec(tmp_path), "--storage", "nfs3://server/share"],
           "nfs3://server/share/small", "not a storage location pyarrow can open")


def test_resume_of_a_folder_that_is_no_study(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    _fails(capsys, ["resume", str(tmp_path)], f"{tmp_path}: not a study folder (no spec.yaml)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "no lock, nothing written"


def test_resume_of_a_study_whose_frozen_spec_is_broken(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("name: [unclosed")
    _fails(capsys, ["resume", str(tmp_path)], f"{tmp_path / 'spec.yaml'}: not valid YAML")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_spec_path_that_is_a_folder(tmp_path, capsys):
    _fails(capsys, ["plan", str(tmp_path)], f"{tmp_path}: no such spec file")


# --- specs --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [("- cot\n- bsm\n", "a study spec is a YAML mapping, got list"),
                                                ("", "a study spec is a YAML mapping")],
                         ids=["yaml-list", "empty-file"])
def test_spec_that_is_not_a_mapping(tmp_path, capsys, text, expected):
    (tmp_path / "spec.yaml").write_text(text)
    _fails(capsys, ["run", str(tmp_path / "spec.yaml")], f"{tmp_path / 'spec.yaml'}: {expected}")


@pytest.mark.parametrize(("overrides", "field", "expected"), [
    ({"name": "../escape"}, "name", "should match pattern"),
    ({"training": {"schedule": "exponential"}}, "training.schedule", "'cosine', 'linear' or 'constant'"),
    ({"training": {"seeds": []}}, "training.seeds", "at least 1 item"),
    ({"training": {"warmup_ratio": 1.5}}, "training.warmup_ratio", "less than 1"),
    ({"resources": {"gpus_per_worker": -1}}, "resources.gpus_per_worker", "greater than or equal to 0"),
    ({"resources": {"trial_attempts": 0}}, "resources.trial_attempts", "greater than or equal to 1"),
    ({"method": "dpo"}, "method", "'sft'"),
    ({"datasets": [{"name": "arith"}, {"name": "arith"}]}, "datasets", "names must be unique"),
    ({"datasets": [{"name": "arith", "arith": {"ops_min": 4, "ops_max": 2}}]}, "datasets[0].arith",
     "ops_min (4) must not exceed ops_max (2)"),
    ({"tokenizer": {"vocab_size": 5}}, "tokenizer.vocab_size", "greater than or equal to 300"),
    ({"teachers": [{"kind": "program", "name": "program", "levels_by_format": {"poetry": [3]}}]},
     "teachers[0].levels_by_format.poetry.[key]", "'cot'"),
], ids=["name-escapes-storage", "unknown-schedule", "no-seeds", "warmup-over-1", "negative-gpus",
        "zero-attempts", "unknown-method", "dataset-twice", "ops-range", "tiny-vocab", "levels-of-unknown-format"])
def test_bad_spec_field_through_the_cli(tmp_path, capsys, nothing_written, overrides, field, expected):
    message = _fails(capsys, ["run", _spec(tmp_path, **overrides)], f"{tmp_path / 'spec.yaml'}: ", expected)
    assert f": {field}: " in message or f": <top level>: {field}: " in message, message


# --- data files ---------------------------------------------------------------------------------

def _gsm8k_spec(tmp_path: Path, train: bytes, test: bytes = GSM_ROW, **dataset: object) -> str:
    folder = tmp_path / "data" / "gsm8k"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_bytes(train)
    (folder / "test.jsonl").write_bytes(test)
    return _spec(tmp_path, datasets=[{"name": "gsm8k", **dataset}], teachers=[], formats=["answer_only"],
                 data_dir=str(tmp_path / "data"))


def test_empty_data_file(tmp_path, capsys, nothing_written):
    _fails(capsys, ["run", _gsm8k_spec(tmp_path, b"")], f"{tmp_path / 'data/gsm8k/train.jsonl'}: holds no rows")


def test_data_file_that_is_not_text(tmp_path, capsys, nothing_written):
    _fails(capsys, ["run", _gsm8k_spec(tmp_path, b"\xff\xfe\x00\x01PK\x03\x04")],
           f"{tmp_path / 'data/gsm8k/train.jsonl'}: not UTF-8 text")


def test_alpaca_test_file_row_without_output_or_label(tmp_path, capsys, nothing_written):
    spec = _gsm8k_spec(tmp_path, GSM_ROW, test_file="alpaca.json")
    (tmp_path / "data/gsm8k/alpaca.json").write_text(json.dumps([{"instruction": "How many?"}]))
    _fails(capsys, ["run", spec], f"{tmp_path / 'data/gsm8k/alpaca.json'}: row 0: missing field")


def test_a_data_uri_that_cannot_be_reached(tmp_path, capsys, monkeypatch, nothing_written):
    """An S3 endpoint where nothing listens: one error naming the location, before anything starts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = f"s3://no-bucket/data?endpoint_override=127.0.0.1:{port}&scheme=http"
    spec = _spec(tmp_path, datasets=[{"name": "gsm8k"}], teachers=[], formats=["answer_only"])
    _fails(capsys, ["run", spec, "--data-dir", data_dir],
           f"s3://no-bucket/data/gsm8k?endpoint_override=127.0.0.1:{port}&scheme=http: cannot be reached")


def _svamp_release_spec(tmp_path: Path, shared_data: Path, files: list) -> str:
    (tmp_path / "data" / "svamp" / "cot").mkdir(parents=True)
    shutil.copy(shared_data / "svamp" / "SVAMP.json", tmp_path / "data" / "svamp" / "SVAMP.json")
    return _spec(tmp_path, datasets=[{"name": "svamp"}], granularities=[1], formats=["cot"],
                 teachers=[{"kind": "released", "name": "chatgpt", "files": files}], data_dir=str(tmp_path / "data"))


def test_released_glob_that_matches_nothing(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_ChatGTP_level*_ranked.json"])
    _fails(capsys, ["run", spec], "teacher 'chatgpt': no file matches",
           str(tmp_path / "data/svamp/cot/SVAMP_ChatGTP_level*_ranked.json"))


def test_released_file_whose_name_says_nothing(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/final_v2.json"])
    (tmp_path / "data/svamp/cot/final_v2.json").write_text("[]")
    _fails(capsys, ["run", spec], f"{tmp_path / 'data/svamp/cot/final_v2.json'}: cannot tell the data set from the name",
           "{path: ..., dataset: ..., format: ..., granularity: N}")


def test_released_file_whose_rationale_column_is_ambiguous(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_chatgpt_level1_ranked.json"])
    rows = [{"instruction": "Q?", "gemini_output": "The answer is 1", "llama_output": "The answer is 2"}]
    (tmp_path / "data/svamp/cot/SVAMP_chatgpt_level1_ranked.json").write_text(json.dumps(rows))
    _fails(capsys, ["run", spec], "SVAMP_chatgpt_level1_ranked.json: cannot tell which column is the teacher's rationale",
           "['gemini_output', 'instruction', 'llama_output']")


def test_released_file_that_matches_no_training_question(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_chatgpt_level1_ranked.json"])
    rows = [{"instruction": "How many moons has Mars?", "output": "The answer is 2"}]
    (tmp_path / "data/svamp/cot/SVAMP_chatgpt_level1_ranked.json").write_text(json.dumps(rows))
    _fails(capsys, ["run", spec], "none of its 1 rows matches a training question of 'svamp'")


def test_openai_teacher_whose_key_variable_is_unset(tmp_path, capsys, monkeypatch, nothing_written):
    monkeypatch.delenv("COTSTUDY_ABSENT_KEY", raising=False)
    teacher = {"kind": "openai", "name": "gpt", "base_url": "http://127.0.0.1:9/v1", "model": "m",
               "api_key_env": "COTSTUDY_ABSENT_KEY"}
    _fails(capsys, ["run", _spec(tmp_path, teachers=[teacher])],
           "teacher 'gpt': the environment variable COTSTUDY_ABSENT_KEY (its api_key_env) is not set")


# --- students (checked by the launcher before Ray starts and before anything is written) ----------

@pytest.mark.parametrize(("student", "training", "expected"), [
    ({"name": "ghost", "hf_id": "/nonexistent/students/ghost"}, {},
     "student 'ghost' (hf_id '/nonexistent/students/ghost')"),
    ({"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2}}, {"finetune": "lora", "lora": {"targets": ["qkv"]}},
     "student 's': LoRA target 'qkv' matches no layer of the model; its layers are named ['down_proj', "),
], ids=["unloadable-hf-id", "missing-lora-target"])
def test_a_student_that_cannot_be_trained_as_asked(tmp_path, capsys, nothing_written, student, training, expected):
    _fails(capsys, ["run", _spec(tmp_path, students=[student], training={"max_steps": 2, **training})], expected)


# --- known gaps: bad input that is not refused yet (study/spec.py, study/datasets, study/inputs.py) --

def test_levels_by_format_outside_the_grid(tmp_path, capsys, nothing_written):
    teacher = {"kind": "program", "name": "program", "levels_by_format": {"cot": [7]}}
    _fails(capsys, ["plan", _spec(tmp_path, teachers=[teacher])], "teachers[0].levels_by_format")


def test_repeated_format(tmp_path, capsys, nothing_written):
    _fails(capsys, ["plan", _spec(tmp_path, formats=["cot", "cot"])], "formats")


def test_alpaca_file_that_is_not_a_list(tmp_path, capsys, nothing_written):
    spec = _gsm8k_spec(tmp_path, GSM_ROW, test_file="alpaca.json")
    (tmp_path / "data/gsm8k/alpaca.json").write_text(json.dumps({"instruction": "How many?", "output": "4"}))
    _fails(capsys, ["plan", spec], "alpaca.json", "list")


def test_released_file_that_is_not_a_list(tmp_path, capsys, shared_data):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"])
    (tmp_path / "data/svamp/cot/SVAMP_ChatGPT_level1_ranked.json").write_text('{"not": "a list"}')
    _fails(capsys, ["run", spec], "SVAMP_ChatGPT_level1_ranked.json")
    assert not (tmp_path / "out").exists()


def test_plan_with_an_unknown_storage_scheme(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out"))
    assert main(["plan", str(spec), "--storage", "foo://bucket/x"]) == 2
    captured = capsys.readouterr()
    assert "error: storage: foo://bucket/x" in captured.err and "cells:" not in captured.out
