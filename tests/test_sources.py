"""Data set loaders: each source's own file format, the paper's splits, and clear errors."""

import json

import pytest

from study.core.datasets import REGISTRY, DataError, load_split, problem_text, question_prompt, score
from study.core.spec import DatasetSpec


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def _spec(name, folder, **fields):
    return DatasetSpec(name=name, path=str(folder), **fields)


def _official(name, folder, **fields):
    """The data set's official split, in the layout of its own release."""
    return DatasetSpec(name=name, split="official", path=str(folder), **fields)


def test_registry_has_the_papers_seven_and_the_demo():
    assert set(REGISTRY) == {"arith", "svamp", "gsm8k", "aqua", "math", "csqa", "obqa", "strategyqa"}
    assert {name: info.answer_type for name, info in REGISTRY.items()} == {
        "arith": "number", "svamp": "number", "gsm8k": "number", "aqua": "choice", "math": "math",
        "csqa": "choice", "obqa": "choice", "strategyqa": "yes_no"}


def test_svamp_split_is_the_papers_700_300(shared_data):
    spec = _spec("svamp", shared_data / "svamp")
    train, test = load_split(spec, "train"), load_split(spec, "test")
    assert (len(train), len(test)) == (700, 300)
    released = json.loads((shared_data / "svamp/cot/SVAMP_only_ans.json").read_text())
    released_questions = {" ".join(r["instruction"].split()) for r in released}
    assert {p.question for p in train} == released_questions
    assert not {p.question for p in test} & released_questions
    first = next(p for p in train if p.uid == "chal-2")
    assert first.answer == "1" and first.human_rationale == "4.0 - 3.0 = 1.0"


def test_gsm8k_official_split_and_answers(shared_data):
    spec = _spec("gsm8k", shared_data / "gsm8k")
    train, test = load_split(spec, "train"), load_split(spec, "test")
    assert (len(train), len(test)) == (7473, 1319)
    janet = test[0]
    assert janet.answer == "18" and "<<" not in janet.human_rationale and "####" not in janet.human_rationale
    assert all(p.answer for p in train)


def test_aqua_jsonl_with_options(tmp_path):
    row = {"question": "What is 2 + 3?", "options": ["A)4", "B)5", "C)6", "D)7", "E)8"],
           "rationale": "2 + 3 = 5\nANSWER: B", "correct": "B"}
    _write_jsonl(tmp_path / "train.json", [row, {**row, "correct": "C"}])
    _write_jsonl(tmp_path / "test.json", [row])
    problem = load_split(_official("aqua", tmp_path), "test")[0]
    assert problem.answer == "B" and [c.text for c in problem.choices] == ["4", "5", "6", "7", "8"]
    assert problem_text(problem).endswith("Answer choices: A: 4, B: 5, C: 6, D: 7, E: 8")
    assert question_prompt("aqua", problem_text(problem)).startswith("Question: What is 2 + 3?\nAnswer choices:")
    assert score("aqua", "The answer is (B)", problem.answer, problem.choices)
    assert score("aqua", "The answer is 5", problem.answer, problem.choices)
    assert len(load_split(_official("aqua", tmp_path), "train")) == 2


def test_math_folder_of_one_json_per_problem(tmp_path):
    for split, answer in (("train", "\\frac{1}{2}"), ("test", "5")):
        folder = tmp_path / split / "algebra"
        folder.mkdir(parents=True)
        (folder / "1.json").write_text(json.dumps({
            "problem": "Solve it.", "level": "Level 2", "type": "Algebra",
            "solution": f"So $x = \\boxed{{{answer}}}$."}))
    train = load_split(_official("math", tmp_path), "train")
    assert train[0].answer and score("math", "The answer is \\boxed{0.5}", train[0].answer)
    assert train[0].uid == "Algebra/1"
    assert score("math", "\\boxed{5}", load_split(_official("math", tmp_path), "test")[0].answer)


def test_math_jsonl_lists_work_too(tmp_path):
    row = {"problem": "p", "level": "Level 1", "type": "Geometry", "solution": "\\boxed{90^\\circ}"}
    _write_jsonl(tmp_path / "train.jsonl", [row])
    (tmp_path / "test.json").write_text(json.dumps([row, row]))
    assert len(load_split(_official("math", tmp_path), "test")) == 2
    assert score("math", "The answer is 90", load_split(_official("math", tmp_path), "train")[0].answer)


def _qa_row(uid, fact=None):
    row = {"id": uid, "question": {"stem": "Where do fish live?",
                                   "choices": [{"label": "A", "text": "desert"}, {"label": "B", "text": "water"}]},
           "answerKey": "B"}
    return {**row, "fact1": fact} if fact else row


def test_commonsenseqa_uses_the_dev_split_as_test(tmp_path):
    _write_jsonl(tmp_path / "train_rand_split.jsonl", [_qa_row("q1"), _qa_row("q2")])
    _write_jsonl(tmp_path / "dev_rand_split.jsonl", [_qa_row("q3")])
    test = load_split(_official("csqa", tmp_path), "test")
    assert [p.uid for p in test] == ["q3"] and test[0].answer == "B" and test[0].human_rationale is None
    assert score("csqa", "Fish live in water. The answer is water", "B", test[0].choices)


def test_openbookqa_fact_is_its_human_rationale(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [_qa_row("o1", fact="fish need water")])
    _write_jsonl(tmp_path / "test.jsonl", [_qa_row("o2", fact="x")])
    assert load_split(_official("obqa", tmp_path), "train")[0].human_rationale == "fish need water."


def test_strategyqa_is_divided_by_qid_hash_when_no_test_file(tmp_path):
    rows = [{"qid": f"q{i}", "question": f"Is {i} even?", "answer": i % 2 == 0, "facts": [f"{i} mod 2"],
             "decomposition": []} for i in range(200)]
    (tmp_path / "strategyqa_train.json").write_text(json.dumps(rows))
    spec = _official("strategyqa", tmp_path)
    train, test = load_split(spec, "train"), load_split(spec, "test")
    assert len(train) + len(test) == 200 and 40 <= len(test) <= 80
    assert not {p.uid for p in train} & {p.uid for p in test}
    assert {p.answer for p in train} == {"yes", "no"}
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    (shuffled / "strategyqa_train.json").write_text(json.dumps(rows[::-1]))
    assert {p.uid for p in load_split(_official("strategyqa", shuffled), "test")} == {p.uid for p in test}


def test_alpaca_test_files_with_label_or_output(tmp_path):
    (tmp_path / "strategyqa_train.json").write_text(json.dumps(
        [{"qid": "a", "question": "Q?", "answer": True, "facts": []}]))
    (tmp_path / "labels.json").write_text(json.dumps([{"instruction": "Is water wet?", "label": "yes"}]))
    (tmp_path / "outputs.json").write_text(json.dumps([{"instruction": "Is fire cold?", "output": "No. The answer is no"}]))
    labelled = load_split(_official("strategyqa", tmp_path, test_file="labels.json"), "test")
    assert [(p.question, p.answer) for p in labelled] == [("Is water wet?", "yes")]
    extracted = load_split(_official("strategyqa", tmp_path, test_file="outputs.json"), "test")
    assert extracted[0].answer == "no"


def test_a_malformed_row_names_the_file_and_row(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "x #### 4"}, {"question": "q2"}])
    _write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "#### 4"}])
    with pytest.raises(DataError, match=r"train.jsonl: row 1: missing field 'answer'"):
        load_split(_spec("gsm8k", tmp_path), "train")


def test_broken_json_line_and_bad_answer_name_the_row(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "#### 4"}\n{"question": \n')
    _write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "no final answer"}])
    with pytest.raises(DataError, match=r"train.jsonl: row 1: not valid JSON"):
        load_split(_spec("gsm8k", tmp_path), "train")
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "#### 4"}\n')
    with pytest.raises(DataError, match=r"test.jsonl: row 0: field 'answer' does not end with '#### N'"):
        load_split(_spec("gsm8k", tmp_path), "test")


def test_missing_folder_and_missing_file_say_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'gsm8k': no folder .*--data-dir"):
        load_split(_spec("gsm8k", tmp_path / "absent"), "train")
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "#### 4"}])
    with pytest.raises(DataError, match=r"no test file .* \(looked for test.jsonl\); name it with `test_file:`"):
        load_split(_spec("gsm8k", tmp_path), "test")


def test_choice_answer_outside_the_options_is_an_error(tmp_path):
    bad = {**_qa_row("q1"), "answerKey": "F"}
    _write_jsonl(tmp_path / "train_rand_split.jsonl", [bad])
    _write_jsonl(tmp_path / "dev_rand_split.jsonl", [_qa_row("q3")])
    with pytest.raises(DataError, match=r"row 0: field 'answerKey' is 'F', not one of the choices"):
        load_split(_official("csqa", tmp_path), "train")
