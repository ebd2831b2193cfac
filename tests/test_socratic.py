"""`method: socratic`: decompositions read from the released BSM files, GSM8K's Socratic lines and
the program teacher's steps; the grid's rule for what it admits; two tiny models trained to a fixed
decomposition answering in turns; one cell through `cotstudy run` on a real local Ray."""

import json
import os
import subprocess
import sys

import faults
import pandas as pd
import pytest
import torch
from conftest import small_spec, write_spec
from ray import cloudpickle

from study.core.cells import CorpusKey, expand_grid
from study.core.datasets import DatasetSpec, SubQuestion, load_split
from study.core.program_render import render, sub_questions
from study.core.socratic import DECOMPOSER, SOLVER, parse_bsm, role_pairs
from study.core.spec import (
    EvalSpec,
    ProgramTeacher,
    SocraticMethod,
    SpecError,
    StudentSpec,
    TinyArch,
    TrainSettings,
    parse_spec,
)
from study.core.storage import StudyPaths
from trainables.packing import collate_padded
from trainables.socratic import Socratic, corpus_decompositions
from trainables.step import TargetLoss
from trainables.students import build_student
from trainables.tokenizer import train_tokenizer

PROGRAM = ProgramTeacher(kind="program", name="program")


def _train_split(dataset: DatasetSpec):
    """A data set's train problems from its source (in a cell: the split stored in the study)."""
    return load_split(dataset, "train")
cloudpickle.register_pickle_by_value(faults)  # Ray workers cannot import the tests folder


# ---------------------------------------------------------------- decompositions from real text

def test_the_released_bsm_files_parse_into_sub_questions_and_sub_answers(shared_data):
    rows = json.loads((shared_data / "svamp/cot/0_SVAMP_chatgpt_level3BSM.json").read_text())
    assert parse_bsm(rows[0]["output"]) == (
        SubQuestion("How many bananas are there in total?", "There are 290 bananas in total."),
        SubQuestion("How many groups are the bananas organized into?", "The bananas are organized into 2 groups."),
        SubQuestion("What calculation must be performed to find the size of each group?",
                    "We need to perform the division of 290 by 2."),
        SubQuestion("What is the result of 290 divided by 2?", "Therefore, 290 / 2 = 145. The answer is 145"),
    )
    # a row written without spaces after its question marks and full stops
    run_on = next(r["output"] for r in rows if "in the morning?There are 44" in r["output"])
    assert [s.question for s in parse_bsm(run_on)][:2] == ["How many campers went rowing in the morning?",
                                                          "How many campers went rowing in the afternoon?"]
    assert parse_bsm(run_on)[-1] == SubQuestion("What is the subtraction of 39 from 44?", "44 - 39 = 5. The answer is 5")
    # rows that ask no question have no decomposition (left out of training, counted as dropped)
    parsed = [parse_bsm(r["output"]) for r in rows]
    assert sum(1 for steps in parsed if not steps) == 6 and len(parsed) == 699


def test_gsm8k_socratic_lines_become_sub_questions_with_the_main_files_human_rationale(shared_data):
    socratic = DatasetSpec(name="gsm8k", path=str(shared_data / "gsm8k"), train_file="test_socratic.jsonl",
                           test_file="test.jsonl")
    (janet, *_), main = load_split(socratic, "train"), load_split(socratic, "test")
    assert janet.sub_questions == (
        SubQuestion("How many eggs does Janet sell?", "Janet sells 16 - 3 - 4 = 9 duck eggs a day."),
        SubQuestion("How much does Janet make at the farmers' market?",
                    "She makes 9 * 2 = $18 every day at the farmer\u2019s market."),
    )
    assert janet.human_rationale == main[0].human_rationale and janet.answer == main[0].answer == "18"
    assert not main[0].sub_questions  # the main files carry no decomposition
    key = CorpusKey(dataset=socratic, teacher=None, granularity=None, format="human")
    rows = pd.DataFrame({"uid": [janet.uid], "question": [janet.question], "rationale": ["-"], "answer": ["18"]})
    (steps,) = corpus_decompositions(SocraticMethod(kind="socratic"), key, rows, _train_split(socratic))
    assert steps[-1].answer.endswith("market. The answer is 18.")  # the solver learns to close with it
    decomposer, solver = (role_pairs(role, janet.question, steps) for role in (DECOMPOSER, SOLVER))
    assert decomposer[1] == (f"{janet.question}\nSub-question: How many eggs does Janet sell?\n"
                             "Sub-answer: Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
                             "Role: decomposer. Ask the next sub-question.",
                             "How much does Janet make at the farmers' market?")
    assert solver[0] == (f"{janet.question}\nSub-question: How many eggs does Janet sell?\n"
                         "Role: solver. Answer the last sub-question.", "Janet sells 16 - 3 - 4 = 9 duck eggs a day.")


def test_the_split_stored_in_the_study_keeps_the_socratic_annotations(shared_data, tmp_path):
    """Cells read their train split from the study folder (study/core/stored_splits.py), where the
    decompositions of format human come from."""
    from study.core.stored_splits import store_splits, stored_split

    socratic = DatasetSpec(name="gsm8k", path=str(shared_data / "gsm8k"), train_file="test_socratic.jsonl",
                           test_file="test.jsonl")
    paths = StudyPaths(str(tmp_path / "study"))
    store_splits(paths, [socratic])
    stored = stored_split(paths, socratic, "train")
    assert stored == load_split(socratic, "train") and stored[0].sub_questions[0].question == \
        "How many eggs does Janet sell?"


def test_the_program_teachers_bsm_text_parses_back_to_its_solution_steps():
    for problem in load_split(DatasetSpec(name="arith"), "train")[:20]:
        for level in range(1, 7):
            steps = sub_questions(problem, level)
            assert parse_bsm(render(problem, level, "bsm")) == steps
            assert len(steps) == (1 if level <= 2 else len(problem.steps))
            assert steps[-1].answer.endswith(f"The answer is {problem.answer}.")


# ---------------------------------------------------------------- what the grid makes

def test_socratic_cells_exist_only_where_a_decomposition_does(tmp_path):
    released = {"kind": "released", "name": "gpt", "files": ["x.json"]}
    spec = parse_spec(small_spec(tmp_path, method="socratic", formats=["cot", "bsm", "answer_only", "human"],
                                 teachers=[{"kind": "program", "name": "program"}, released]))
    assert sorted(c.name for c in expand_grid(spec)) == [
        "arith.gpt.L3.bsm.s.socratic.s0",        # the rationale's own sub-questions
        "arith.human.s.socratic.s0",             # the data set's annotations (checked before Ray: see below)
        "arith.program.L3.bsm.s.socratic.s0",    # the program teacher: its solution steps, any format
        "arith.program.L3.cot.s.socratic.s0",
    ]  # not answer_only, and not a released cot corpus: neither has a decomposition
    unified = parse_spec(small_spec(tmp_path, method={"kind": "socratic", "variant": "unified"}))
    assert [c.name for c in expand_grid(unified)] == ["arith.program.L3.cot.s.socratic-unified.s0"]
    with pytest.raises(SpecError, match="method: socratic admits none of formats .'answer_only'.*needs a decomposition"):
        parse_spec(small_spec(tmp_path, method="socratic", formats=["answer_only"]))
    # on the methods axis with sft: sft makes every point, socratic only the program teacher's
    both = parse_spec(small_spec(tmp_path, methods=["sft", "socratic"]))
    assert sorted(c.name for c in expand_grid(both)) == ["arith.answer_only.s.sft.s0", "arith.program.L3.cot.s.sft.s0",
                                                         "arith.program.L3.cot.s.socratic.s0"]


def test_a_socratic_cell_cannot_be_a_kd_teacher(tmp_path):
    """Its models learn role prompts, not the corpus text a kd student is compared on."""
    spec = parse_spec(small_spec(tmp_path, formats=["cot"], methods=[
        "socratic", {"kind": "kd", "teacher_model": "cell:arith.program.L3.cot.s.socratic.s0"}]))
    with pytest.raises(SpecError, match=r"'cell:arith.program.L3.cot.s.socratic.s0' names no cell of another method "
                                        r"\(one that trains one student\) in this study's grid; its cells: \[\]"):
        expand_grid(spec)


def test_socratic_on_a_data_set_without_annotations_is_exit_2_with_nothing_written(tmp_path, capsys):
    from study.run.cli import main

    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", method="socratic", formats=["human"]))
    assert main(["run", str(spec)]) == 2
    error = capsys.readouterr().err
    assert "error: dataset 'arith', format 'human': method socratic trains on the data set's Socratic annotations" in error
    assert "80 training problems have none" in error
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- two tiny models, in turns

def _memorise(method: Socratic, role: str, tokenizer, key: CorpusKey, rows: pd.DataFrame, steps: int) -> torch.nn.Module:
    """A tiny student trained on all of the role's examples at once until it says them back."""
    examples = method.examples(role, tokenizer, key, rows, TrainSettings(max_length=256)).examples
    batch = collate_padded(examples, tokenizer.pad_token_id)
    targets = int((batch["target_ids"] != -100).sum())
    model = build_student(StudentSpec(name="memoriser", tiny=TinyArch(layers=2, width=64, heads=2)), tokenizer, 256,
                          seed=0)
    loss_module = TargetLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = loss_module(batch) / targets
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, f"{role} did not memorise its examples (loss {loss.item():.3f})"
    return model


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine more threads made this test 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_decomposer_and_a_solver_trained_on_a_fixed_decomposition_reach_the_answers_in_turns(one_thread):
    torch.manual_seed(0)
    dataset = DatasetSpec(name="arith", arith={"n_train": 4, "n_test": 4, "ops_min": 2, "ops_max": 2})
    problems = load_split(dataset, "train")
    key = CorpusKey(dataset=dataset, teacher=PROGRAM, granularity=3, format="cot")
    rows = pd.DataFrame({"uid": [p.uid for p in problems], "question": [p.question for p in problems],
                         "rationale": [render(p, 3, "cot") for p in problems], "answer": [p.answer for p in problems]})
    method = Socratic(SocraticMethod(kind="socratic", max_turns=4), _train_split)
    assert method.roles == (DECOMPOSER, SOLVER)
    texts = [question + prompt + target for role in method.roles
             for question, steps in zip(rows["question"], corpus_decompositions(method.settings, key, rows, problems))
             for prompt, target in role_pairs(role, question, steps)]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    models = {role: _memorise(method, role, tokenizer, key, rows, steps=150) for role in method.roles}
    evaluation = method.evaluate(models, tokenizer, "arith", problems, EvalSpec(max_new_tokens=48, batch_size=8))
    predictions = evaluation.predictions
    expected = [sub_questions(p, 3) for p in problems]
    assert list(predictions["sub_questions"].map(list)) == [[s.question for s in steps] for steps in expected]
    assert list(predictions["sub_answers"].map(list)) == [[s.answer for s in steps] for steps in expected]
    assert list(predictions["turns"]) == [2, 2, 2, 2]  # each closed by its answer sentence, under max_turns
    assert list(predictions["answer"]) == [p.answer for p in problems] and evaluation.accuracy == 1.0
    assert (predictions["output"] == [steps[-1].answer for steps in expected]).all()  # the last answer is the final one


def test_the_unified_student_learns_both_roles_examples_from_one_corpus():
    problems = load_split(DatasetSpec(name="arith"), "train")[:3]
    key = CorpusKey(dataset=DatasetSpec(name="arith"), teacher=PROGRAM, granularity=4, format="bsm")
    rows = pd.DataFrame({"uid": [p.uid for p in problems], "question": [p.question for p in problems],
                         "rationale": [render(p, 4, "bsm") for p in problems], "answer": [p.answer for p in problems]})
    tokenizer = train_tokenizer(list(rows["question"]) + list(rows["rationale"]), vocab_size=300)
    settings = TrainSettings(max_length=512)
    unified = Socratic(SocraticMethod(kind="socratic", variant="unified"), _train_split)
    two = Socratic(SocraticMethod(kind="socratic"), _train_split)
    assert unified.roles == ("unified",)
    both = [two.examples(role, tokenizer, key, rows, settings).examples for role in two.roles]
    assert sorted(map(str, unified.examples("unified", tokenizer, key, rows, settings).examples)) == \
        sorted(map(str, both[0] + both[1]))
    assert len(both[0]) == sum(len(p.steps) for p in problems)  # one example per sub-question and role


# ---------------------------------------------------------------- one cell through the CLI, on Ray

@pytest.mark.ray
def test_cli_runs_one_two_model_socratic_cell_and_counts_both_models(tmp_path):
    raw = small_spec(tmp_path / "out", name="socratic", method={"kind": "socratic", "max_turns": 3},
                     formats=["cot", "answer_only"], evaluation={"max_new_tokens": 24})
    completed = subprocess.run([sys.executable, "-m", "study", "run", str(write_spec(tmp_path / "spec.yaml", raw))],
                               capture_output=True, text=True, timeout=540,
                               env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    paths = StudyPaths(str(tmp_path / "out" / "socratic"))
    results = pd.read_parquet(paths.results)
    (row,) = results.itertuples()  # answer_only has no decomposition: no cell
    assert row.name == "arith.program.L3.cot.s.socratic.s0" and row.method == "socratic"
    assert row.train_steps == 2 * 6 and row.n_test == 16  # the decomposer's 6 steps, then the solver's
    one_student = sum(p.numel() for p in build_student(parse_spec(raw).students[0], _study_tokenizer(paths), 256, 0)
                      .parameters())
    assert row.student_params == 2 * one_student  # both models are kept and counted
    predictions = pd.read_parquet(paths.cell_predictions(row.cell_id))
    assert {"sub_questions", "sub_answers", "turns"} <= set(predictions.columns)
    assert predictions["turns"].between(0, 3).all()
    assert (predictions["turns"] == predictions["sub_questions"].map(len)).all()
    cell_dir = tmp_path / "out" / "socratic" / "cells" / row.cell_id
    saved = sorted(p.parent.name for p in (cell_dir / "train").glob("checkpoint_*/*/trainer_state.pt"))
    assert saved == [DECOMPOSER, SOLVER]
    assert not list((cell_dir / "train").glob("checkpoint_*/*/optimizer_state.pt"))  # deleted after result.json
    # each model in Hugging Face format, in a folder of its role; export-student copies both
    from transformers import AutoModelForCausalLM

    from study.run.cli import main

    exported = {role: AutoModelForCausalLM.from_pretrained(cell_dir / "model" / role) for role in (DECOMPOSER, SOLVER)}
    assert all(sum(p.numel() for p in model.parameters()) == one_student for model in exported.values())
    assert main(["export-student", paths.root, row.name, "--out", str(tmp_path / "copied")]) == 0
    assert sorted(p.name for p in (tmp_path / "copied").iterdir()) == [DECOMPOSER, SOLVER]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "copied" / SOLVER).num_parameters() == one_student


def _study_tokenizer(paths: StudyPaths):
    from pathlib import Path

    from trainables.tokenizer import load_tokenizer

    return load_tokenizer(Path(paths.tokenizer))


@pytest.mark.ray
def test_a_restart_during_the_solver_keeps_the_trained_decomposer(tmp_path, ray_local):
    """The first attempt fails at the solver's first step: the retry trains only the solver (the
    decomposer's final state was checkpointed when it finished)."""
    from study.run.launch import _prepare_inputs
    from study.run.studies import prepare_storage
    from trainables.cell import fit_cell

    steps = 4
    spec = parse_spec(small_spec(tmp_path / "out", name="socratic-resume", method="socratic", formats=["cot"],
                                 training={"max_steps": steps, "tokens_per_batch": 2048, "max_length": 256},
                                 evaluation={"max_new_tokens": 8, "test_size": 4},
                                 resources={"checkpoint_every_s": 0}))
    paths, (cell,) = prepare_storage(spec)
    _prepare_inputs(spec, paths)
    records = tmp_path / "records"
    records.mkdir()
    loop = faults.failing_train_loop(fail_at_call=steps + 1, records=records)
    with pytest.raises(Exception, match=f"injected failure at optimizer step {steps + 1}"):
        fit_cell(cell, paths, spec.resources, loop_per_worker=loop)
    resumed = fit_cell(cell, paths, spec.resources, loop_per_worker=loop)
    calls = [len((records / f"calls-0-{attempt}").read_text().splitlines()) for attempt in (0, 1)]
    assert calls == [steps + 1, steps]  # the retry ran the solver's steps only
    assert resumed.train_steps == 2 * steps
