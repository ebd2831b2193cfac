"""Hostile input (issue 19): careless or hostile input, never exotic, through every command. Each
case is one line naming the field or file, exit code 2, nothing written; no computed result is
lost; nothing is silently reinterpreted. Grouped by the issue's classes 1-8; the cases are our
own, not the issue's examples only."""

from __future__ import annotations

import json
import math
import resource
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import small_spec, write_spec
from test_bad_input import GSM_ROW, _fails, _gsm8k_spec, _spec, _svamp_release_spec

from study.core import storage
from study.core.cells import expand_grid
from study.core.results import CellResult, Measurements, cell_states, collect_results, set_aside_corrupt_results
from study.core.spec import parse_spec
from study.core.storage import StudyPaths
from study.run.cli import main
from study.run.studies import check_study_folder, prepare_storage


@pytest.fixture
def nothing_written(tmp_path):
    yield
    assert not (tmp_path / "out").exists(), "bad input must write nothing to storage"


def _raw_spec(tmp_path: Path, text: str) -> str:
    """A spec written as YAML text (what a user types, not what yaml.safe_dump would write)."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


SMALL_YAML = yaml.safe_dump(small_spec(Path("/nonexistent")))

# --- 1. a result that can never be read back ----------------------------------------------------


@pytest.mark.parametrize(("section", "value", "field"), [
    ("training: {lr_peak: .inf, max_steps: 2}", None, "training.lr_peak"),
    ("training: {epochs: .inf}", None, "training.epochs"),
    ("training: {warmup_ratio: .nan}", None, "training.warmup_ratio"),
    ("resources: {cpus_per_worker: .inf}", None, "resources.cpus_per_worker"),
    ("resources: {checkpoint_every_s: .inf}", None, "resources.checkpoint_every_s"),
    ("teachers: [{kind: openai, name: t, base_url: 'http://x/v1', model: m, generation: {temperature: .nan}}]", None,
     "teachers[0].generation.temperature"),
], ids=["lr-inf", "epochs-inf", "warmup-nan", "cpus-inf", "checkpoint-inf", "temperature-nan"])
def test_a_non_finite_number_anywhere_is_refused(tmp_path, capsys, nothing_written, section, value, field):
    spec = small_spec(tmp_path / "out")
    key = section.split(":")[0]
    spec.pop(key, None)
    text = yaml.safe_dump(spec) + section + "\n"
    message = _fails(capsys, ["plan", _raw_spec(tmp_path, text)], "finite number")
    assert f": {field}: " in message, message


def _done_result(paths: StudyPaths, cell, **changes) -> None:
    """A result.json as a cell writes it, with its checksum; `changes` edit the JSON (e.g. the
    `"final_loss": null` a diverged cell wrote before non-finite losses were refused)."""
    measured = Measurements(student_params=1, accuracy=0.5, n_test=2, n_correct=1, n_unextractable=0,
                            mean_generated_tokens=3.0, train_tokens=10, train_steps=1, train_s=1.0, tokens_per_s=10.0,
                            final_loss=1.0, dropped_examples=0, eval_s=1.0, teacher_accuracy=1.0,
                            mean_rationale_tokens=5.0)
    result = json.loads(CellResult.describe(cell, measured, parse_spec(small_spec(Path("/x"))).resources)
                        .model_dump_json())
    storage.write_bytes_checked(paths.cell_result(cell.cell_id), json.dumps({**result, **changes}).encode())


def test_a_result_with_a_null_loss_never_makes_results_or_status_unreadable(tmp_path, capsys):
    spec = parse_spec(small_spec(tmp_path / "out"))
    paths, cells = prepare_storage(spec)
    _done_result(paths, cells[0])
    _done_result(paths, cells[1], final_loss=None)  # what a NaN loss became in JSON
    states = cell_states(paths, cells)
    assert [s.state for s in states] == ["done", "pending"] and "final_loss" in states[1].error
    assert collect_results(paths, states)["cell_id"].tolist() == [cells[0].cell_id]
    assert storage.read_parquet(paths.results)["cell_id"].tolist() == [cells[0].cell_id]
    assert main(["status", paths.root]) == 0
    assert f"PENDING {cells[1].name}" in capsys.readouterr().out
    assert set_aside_corrupt_results(paths, cells) == [cells[1].cell_id]  # it runs again on resume
    assert not storage.exists(paths.cell_result(cells[1].cell_id))


def test_a_non_finite_loss_stops_training_and_no_result_can_hold_one():
    from trainables.train import TrainingDiverged, check_loss

    settings = parse_spec(small_spec(Path("/x"))).training
    check_loss(2.5, 1, settings)
    for loss in (math.nan, math.inf):
        with pytest.raises(TrainingDiverged, match=rf"the loss is {loss} at step 7 \(training.lr_peak 0.001\)"):
            check_loss(loss, 7, settings)
    with pytest.raises(ValueError, match="final_loss"):
        Measurements.model_validate({**dict.fromkeys(Measurements.model_fields, 1), "final_loss": math.nan})


# --- 2. duplicate or colliding work ------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"training": {"seeds": [0, 1, 0]}}, "training.seeds"),
    ({"granularities": [3, 3]}, "granularities"),
    ({"teachers": [{"kind": "program", "name": "program", "levels_by_format": {"cot": [3, 3]}}]},
     "teachers[0].levels_by_format.cot"),
    ({"formats_by_dataset": {"arith": ["cot", "cot"]}}, "formats_by_dataset.arith"),
    ({"training": {"finetune": "lora", "lora": {"targets": ["q_proj", "q_proj"]}}}, "training.lora.targets"),
    ({"students": [{"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                   {"name": "s", "tiny": {"layers": 2, "width": 32, "heads": 2}}]}, "students"),
], ids=["seed", "granularity", "teacher-level", "dataset-format", "lora-target", "student-name"])
def test_a_repeated_grid_entry_is_refused(tmp_path, capsys, nothing_written, overrides, field):
    message = _fails(capsys, ["run", _spec(tmp_path, **overrides)], "twice" if field != "students" else "unique")
    assert f": {field}: " in message, message


def test_every_cell_of_a_grid_has_its_own_id(tmp_path):
    cells = expand_grid(parse_spec(small_spec(tmp_path, granularities=[1, 3, 6], training={"seeds": [0, 1, 2]})))
    assert len({c.cell_id for c in cells}) == len(cells) == 12


# --- 3. other people's files -------------------------------------------------------------------


def test_a_folder_holding_other_files_is_refused_and_left_untouched(tmp_path, capsys):
    folder = tmp_path / "out" / "small"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "results.parquet").write_bytes(b"my own table")
    _fails(capsys, ["run", _spec(tmp_path)], f"{folder}: holds files that are not a cotstudy study's",
           "notes.txt, results.parquet")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "results.parquet"]
    assert (folder / "results.parquet").read_bytes() == b"my own table"


def test_an_empty_folder_and_this_studys_own_folder_are_claimed(tmp_path):
    spec = parse_spec(small_spec(tmp_path / "out"))
    (tmp_path / "out" / "small").mkdir(parents=True)
    check_study_folder(spec)  # empty: claimed
    prepare_storage(spec)
    check_study_folder(spec)  # its own spec.yaml: claimed again


@pytest.mark.parametrize("storage_value", ["   ", "", " ./out"], ids=["blanks", "empty", "leading-blank"])
def test_a_blank_storage_is_refused_not_taken_for_the_current_folder(tmp_path, capsys, monkeypatch, storage_value):
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    _fails(capsys, ["run", spec, "--storage", storage_value], "storage: a folder or URI, without blanks")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", [["run", "SPEC", "--storage", "~cotstudy_no_such_user/x"],
                                     ["status", "~cotstudy_no_such_user/x/small"],
                                     ["resume", "~cotstudy_no_such_user/x/small"],
                                     ["figures", "~cotstudy_no_such_user/x/small"]], ids=lambda c: c[0])
def test_a_tilde_of_no_user_is_named(tmp_path, capsys, nothing_written, command):
    argv = [_spec(tmp_path) if part == "SPEC" else part for part in command]
    _fails(capsys, argv, "~cotstudy_no_such_user/x", "no such user's home folder")


# --- 4. a refusal that blocks its own fix --------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "run", "corpus-stats"])
def test_an_empty_grid_is_refused(tmp_path, capsys, nothing_written, command):
    teacher = {"kind": "program", "name": "program", "levels_by_format": {"cot": []}}
    spec = _spec(tmp_path, teachers=[teacher], formats=["cot"])
    out = ["--out", str(tmp_path / "out")] if command == "corpus-stats" else []
    _fails(capsys, [command, spec, *out], f"{spec}: the grid is empty")


@pytest.mark.ray
def test_a_run_refused_after_ray_started_leaves_nothing_that_refuses_the_fix(tmp_path, capsys, ray_local):
    spec = _spec(tmp_path, resources={"gpus_per_worker": 1})
    _fails(capsys, ["run", spec], "resources: one trial needs 1 GPUs")
    assert not (tmp_path / "out").exists(), "no spec.yaml, lock or empty folder left behind"
    check_study_folder(parse_spec(small_spec(tmp_path / "out")))  # the corrected spec is accepted


# --- 5. tracebacks instead of errors ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_spec_not_in_utf8_is_named(tmp_path, capsys, nothing_written, encoding):
    path = tmp_path / "spec.yaml"
    path.write_bytes(("# étude\n" + yaml.safe_dump(small_spec(tmp_path / "out"))).encode(encoding))
    _fails(capsys, ["plan", str(path)], f"{path}: not UTF-8 text", "save it as UTF-8")


def test_a_spec_with_a_byte_order_mark_is_read(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_bytes(("\ufeff" + yaml.safe_dump(small_spec(tmp_path / "out"))).encode("utf-8"))
    assert main(["plan", str(path)]) == 0


@pytest.mark.parametrize("command", ["corpus-stats", "figures", "report"])
def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command):
    (tmp_path / "taken").write_text("keep me")
    target = _spec(tmp_path) if command == "corpus-stats" else str(tmp_path)
    _fails(capsys, [command, target, "--out", str(tmp_path / "taken")], f"--out {tmp_path / 'taken'}: is a file")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_figures_of_a_uri_whose_scheme_does_not_work(capsys):
    _fails(capsys, ["figures", "s3://bucket/study?scheme=ftp&endpoint_override=127.0.0.1:9"], "s3://bucket/study",
           "Invalid S3 connection scheme 'ftp'")


def test_serve_teacher_of_a_teacher_that_is_not_served(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"])
    _fails(capsys, ["serve-teacher", spec, "chatgpt"], "teacher 'chatgpt' is imported, not served on Ray Serve")


def test_a_full_disk_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "corpora" / "c.parquet"
    target.parent.mkdir()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), like ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(OSError):
            storage.write_bytes_atomic(str(target), b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert list(target.parent.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_v_shows_its_traceback(tmp_path, capsys, monkeypatch):
    def broken(study_dir: str) -> int:
        raise KeyError("boom")

    monkeypatch.setattr("study.run.cli.status", broken)
    assert main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: KeyError: 'boom' (cotstudy -v status ... shows the traceback)"]
    assert main(["-v", "status", str(tmp_path)]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


# --- 6. silent reinterpretation -----------------------------------------------------------------


def test_a_key_given_twice_is_refused(tmp_path, capsys, nothing_written):
    text = SMALL_YAML.replace("/nonexistent", str(tmp_path / "out")) + "training: {max_steps: 1}\n"
    _fails(capsys, ["plan", _raw_spec(tmp_path, text)], "key 'training' is given twice")


def test_nested_aliases_are_refused_at_once(tmp_path, capsys, nothing_written):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.monotonic()
    _fails(capsys, ["plan", _raw_spec(tmp_path, "\n".join(levels) + "\n")], "expand to more than 100,000 entries")
    assert time.monotonic() - started < 5


def test_a_null_question_is_not_read_as_text(tmp_path, capsys, nothing_written):
    row = b'{"question": null, "answer": "3 + 1 = 4 #### 4"}\n'
    _fails(capsys, ["plan", _gsm8k_spec(tmp_path, GSM_ROW + row)], "train.jsonl: row 1: field 'question' is null")


def test_a_test_file_that_is_the_training_file(tmp_path, capsys, nothing_written):
    _fails(capsys, ["plan", _gsm8k_spec(tmp_path, GSM_ROW, test_file="train.jsonl")],
           "train.jsonl is both its train and its test file")


def test_hub_on_a_data_set_that_has_no_hub_copy(tmp_path, capsys, nothing_written):
    _fails(capsys, ["plan", _spec(tmp_path, datasets=[{"name": "arith", "hub": "someone/arith"}])],
           "datasets[0]: hub: dataset 'arith' has no hub copy")


def test_a_release_of_mostly_another_data_sets_rows(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_chatgpt_level1_ranked.json"])
    svamp = json.loads((shared_data / "svamp/cot/SVAMP_ChatGPT_level1_ranked.json").read_text())[:1]
    gsm = [{"instruction": json.loads(line)["question"], "output": "The answer is 1"}
           for line in (shared_data / "gsm8k/train.jsonl").read_text().splitlines()[:3]]
    (tmp_path / "data/svamp/cot/SVAMP_chatgpt_level1_ranked.json").write_text(json.dumps(svamp + gsm))
    _fails(capsys, ["plan", spec], "only 1 of its 4 distinct questions match a training question of 'svamp'")


def test_a_tilde_in_data_dir_is_the_home_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = _gsm8k_spec(tmp_path, GSM_ROW)
    text = Path(spec).read_text().replace(str(tmp_path / "data"), "~/data")
    assert main(["plan", _raw_spec(tmp_path, text)]) == 0


# --- 7. accepted now, fails hours later ---------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"training": {"seeds": [2**64]}}, "training.seeds[0]"),
    ({"training": {"seeds": [-1]}}, "training.seeds[0]"),
    ({"training": {"max_steps": 10**24}}, "training.max_steps"),
    ({"training": {"max_length": 10**9}}, "training.max_length"),
    ({"datasets": [{"name": "arith", "arith": {"n_train": 10**8}}]}, "datasets[0].arith.n_train"),
    ({"resources": {"trial_attempts": 10**6}}, "resources.trial_attempts"),
], ids=["seed-65-bits", "negative-seed", "max-steps-1e24", "max-length-1e9", "arith-1e8", "attempts-1e6"])
def test_a_value_that_could_only_fail_later_is_refused_now(tmp_path, capsys, nothing_written, overrides, field):
    started = time.monotonic()
    message = _fails(capsys, ["plan", _spec(tmp_path, **overrides)], "than or equal to")
    assert f": {field}: " in message, message
    assert time.monotonic() - started < 5


# --- 8. messages that point the wrong way -------------------------------------------------------


def test_a_json_object_where_rows_are_expected(tmp_path, capsys, nothing_written):
    _fails(capsys, ["plan", _gsm8k_spec(tmp_path, b'{\n  "question": "Q?",\n  "answer": "#### 4"\n}\n')],
           "train.jsonl: holds one JSON object, not rows")


def test_a_data_file_with_a_byte_order_mark_is_read(tmp_path, capsys):
    assert main(["plan", _gsm8k_spec(tmp_path, b"\xef\xbb\xbf" + GSM_ROW)]) == 0


def test_a_numeric_teacher_output_is_named_as_such(tmp_path, capsys, shared_data, nothing_written):
    spec = _svamp_release_spec(tmp_path, shared_data, ["svamp/cot/SVAMP_chatgpt_level1_ranked.json"])
    rows = [{"instruction": "How many?", "output": 3}]
    (tmp_path / "data/svamp/cot/SVAMP_chatgpt_level1_ranked.json").write_text(json.dumps(rows))
    _fails(capsys, ["plan", spec], "row 0: teacher output 'output' is int 3, not text")


def test_a_file_given_as_a_data_sets_folder(tmp_path, capsys, nothing_written):
    spec = _gsm8k_spec(tmp_path, GSM_ROW, path=str(tmp_path / "data/gsm8k/train.jsonl"))
    _fails(capsys, ["plan", spec], "train.jsonl is a file; `path:` names the folder")


def test_a_long_name_is_blamed_on_the_name(tmp_path, capsys, nothing_written):
    message = _fails(capsys, ["run", _spec(tmp_path, name="s" * 300)], "at most 64 characters")
    assert ": name: " in message
