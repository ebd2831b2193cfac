"""Importing the paper's released teacher CoT: file names, matching to problems, reports, filters."""

import json
from pathlib import Path

import pandas as pd
import pytest

from study.core.cells import CorpusKey
from study.core.corpora import training_rows
from study.core.datasets import DataError, load_split
from study.core.spec import DatasetSpec, ReleasedFile, ReleasedTeacher
from study.teachers.released import (
    find_release,
    import_release,
    parse_release_name,
    problems_from_answer_file,
    released_corpus,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("SVAMP_ChatGPT_level3_ranked.json", ("svamp", "chatgpt", 3, "cot")),
    ("0_SVAMP_chatgpt_level5BSM.json", ("svamp", "chatgpt", 5, "bsm")),
    ("0_SVAMP_chatgpt_level3RaR.json", ("svamp", "chatgpt", 3, "rar")),
    ("0_SVAMP_chatgpt_level3SYM.json", ("svamp", "chatgpt", 3, "symbolic")),
    ("openbookQA_chatgpt_level_4_ranked.json", ("obqa", "chatgpt", 4, "cot")),
    ("openbookqa_chatgpt_bsm_level3_ranked.json", ("obqa", "chatgpt", 3, "bsm")),
    ("math_mix_level2.json", ("math", "mix", 2, "cot")),
    ("stqa_gemini_level6_ranked.json", ("strategyqa", "gemini", 6, "cot")),
    ("csqa_llama_level1_ranked.json", ("csqa", "llama", 1, "cot")),
    ("SVAMP_only_ans.json", ("svamp", None, None, "answer_only")),
    ("commonsenseQA_onlyans.json", ("csqa", None, None, "answer_only")),
    ("gsm_train_onlyans.json", ("gsm8k", None, None, "answer_only")),
    ("svamp_human_annotation.json", ("svamp", None, None, "human")),
    ("aqua_human.json", ("aqua", None, None, "human")),
])
def test_release_names_say_dataset_teacher_level_format(name, expected):
    release = parse_release_name(name)
    assert (release.dataset, release.teacher, release.granularity, release.format) == expected


@pytest.mark.parametrize("name", ["openbookQA_ChatGPT_0_shot_with_gt_ranked.json", "obqa_level3_bsm.json",
                                  "mydata_gpt4_level2.json"])
def test_unclear_names_say_how_to_name_the_file(name):
    with pytest.raises(DataError, match=r"cannot tell the .* from the name; name it like '\{dataset\}_\{teacher\}_level"):
        parse_release_name(name)


def test_every_svamp_release_file_imports_and_the_human_file_is_all_correct(shared_data):
    problems = load_split(DatasetSpec(name="svamp", path=str(shared_data / "svamp")), "train")
    files = sorted((shared_data / "svamp" / "cot").glob("*.json"))
    assert len(files) == 24
    for path in files:
        release = parse_release_name(path)
        frame, report = import_release(path, "svamp", problems)
        assert report.rows in (699, 700) and report.matched == report.rows and report.unmatched == 0, report.line()
        assert report.unextractable == 0 and report.duplicates == 0
        assert frame["uid"].notna().all() and frame["gold"].notna().all()
        rate = report.correct / report.rows
        if release.format in ("human", "answer_only"):
            assert rate == 1.0, report.line()
        else:
            assert 0.95 < rate < 1.0, report.line()  # real teachers make a few mistakes
    human, _ = import_release(shared_data / "svamp/cot/svamp_human_annotation.json", "svamp", problems)
    assert human.loc[0, "rationale"] == "290.0 / 2.0 = 145.0. The answer is 145.0" and human.loc[0, "gold"] == "145"


def _problems(tmp_path):
    rows = [{"ID": f"p{i}", "Body": f"Tom has {i} apples.", "Question": "How many?", "Equation": f"( {i}.0 )",
             "Answer": float(i)} for i in range(3)]
    (tmp_path / "SVAMP.json").write_text(json.dumps(rows))
    return [p for p in _load_all(tmp_path)]


def _load_all(folder):
    from study.core.datasets.sources import parse_records, read_records
    from study.core.datasets.svamp import parse_svamp

    return parse_records(folder / "SVAMP.json", read_records(folder / "SVAMP.json"), parse_svamp)


def test_unmatched_and_duplicate_rows_are_kept_and_reported(tmp_path):
    problems = _problems(tmp_path)
    release = tmp_path / "svamp_tutor_level2_ranked.json"
    release.write_text(json.dumps([
        {"instruction": "Tom has 1 apples.  How many?", "output": "He has 1. The answer is 1"},
        {"instruction": "Tom has 1 apples. How many?", "output": "The answer is 7"},
        {"instruction": "Tom has 2 apples. How many?", "output": "no idea"},
        {"instruction": "A question not in the data set", "output": "The answer is 3"},
    ]))
    frame, report = import_release(release, "svamp", problems)
    assert (report.rows, report.matched, report.unmatched, report.duplicates) == (4, 3, 1, 1)
    assert (report.correct, report.unextractable) == (1, 1)
    assert frame["correct"].tolist() == [True, False, False, False]
    assert frame["matched"].tolist() == [True, True, True, False]
    assert frame.loc[3, "question"] == "A question not in the data set" and pd.isna(frame.loc[3, "gold"])
    assert "1 unmatched" in report.line() and "1 duplicate questions" in report.line()


def test_a_question_with_two_different_gold_answers_is_never_joined(tmp_path):
    from study.core.datasets import Problem

    problems = [Problem("a", "Same words?", "1"), Problem("b", "Same  words?", "2")]
    release = tmp_path / "x_t_level1.json"
    release.write_text(json.dumps([{"instruction": "Same words?", "output": "The answer is 1"}]))
    frame, report = import_release(release, "svamp", problems)
    assert report.matched == 0 and report.ambiguous == 1 and not frame.loc[0, "correct"]


def test_malformed_release_rows_name_file_and_row(tmp_path):
    release = tmp_path / "svamp_t_level1.json"
    release.write_text(json.dumps([{"instruction": "q", "output": "a"}, {"instruction": "q2"}]))
    with pytest.raises(DataError, match=r"svamp_t_level1.json: row 1: no teacher output"):
        import_release(release, "svamp", [])
    release.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(DataError, match=r"row 0: expected 'instruction' and 'output'"):
        import_release(release, "svamp", [])


def test_math_release_rows_use_the_teacher_output(tmp_path):
    from study.core.datasets import Problem

    release = tmp_path / "math_gemini_level1_ranked.json"
    release.write_text(json.dumps([{"problem": "Half of one?", "level": "Level 1", "type": "Algebra",
                                    "solution": "\\boxed{\\frac12}", "gemini_output": "It is \\boxed{0.5}"}]))
    frame, report = import_release(release, "math", [Problem("m1", "Half of one?", "\\frac{1}{2}")])
    assert report.correct == 1 and frame.loc[0, "rationale"] == "It is \\boxed{0.5}"


def test_gold_from_the_answer_only_file_when_the_data_set_is_absent(shared_data):
    problems = problems_from_answer_file("svamp", shared_data / "svamp/cot/SVAMP_only_ans.json")
    frame, report = import_release(shared_data / "svamp/cot/SVAMP_llama_level1_ranked.json", "svamp", problems)
    assert report.matched == 700 and report.correct / report.rows > 0.99


def _teacher(folder: Path, **fields) -> ReleasedTeacher:
    return ReleasedTeacher(kind="released", name="chatgpt", files=[str(folder / "*.json")], **fields)


def test_find_release_picks_the_one_file_or_says_what_is_missing(shared_data):
    cot = shared_data / "svamp" / "cot"
    teacher = ReleasedTeacher(kind="released", name="chatgpt", release_name="ChatGPT", files=[str(cot / "*.json")])
    assert Path(find_release(teacher, "svamp", 3, "bsm").path).name == "0_SVAMP_chatgpt_level3BSM.json"
    assert Path(find_release(teacher, "svamp", 6, "cot").path).name == "SVAMP_ChatGPT_level6_ranked.json"
    with pytest.raises(DataError, match=r"no released file for svamp, level 4, format bsm"):
        find_release(teacher, "svamp", 4, "bsm")
    llama = ReleasedTeacher(kind="released", name="llama", files=[str(cot / "SVAMP_llama*.json")])
    with pytest.raises(DataError, match=r"no released file for svamp, level 5, format cot"):
        find_release(llama, "svamp", 5, "cot")
    with pytest.raises(DataError, match=r"no file matches"):
        find_release(ReleasedTeacher(kind="released", name="x", files=[str(cot / "nothing*.json")]), "svamp", 1, "cot")


def test_explicit_file_entries_need_no_naming_convention(tmp_path, shared_data):
    odd = shared_data / "svamp/cot/SVAMP_gemini_level2_ranked.json"
    teacher = ReleasedTeacher(kind="released", name="g", files=[
        ReleasedFile(path=str(odd), dataset="svamp", format="cot", granularity=2)])
    assert find_release(teacher, "svamp", 2, "cot").path == str(odd)


def test_released_corpus_and_the_filter(shared_data):
    dataset = DatasetSpec(name="svamp", path=str(shared_data / "svamp"))
    files = [str(shared_data / "svamp/cot/SVAMP_gemini_level5_ranked.json")]
    keep_correct = ReleasedTeacher(kind="released", name="gemini", files=files)
    key = CorpusKey(dataset=dataset, teacher=keep_correct, granularity=5, format="cot")
    corpus = released_corpus(key, load_split(key.dataset, "train"))
    assert len(corpus) == 700 and 0 < (~corpus["correct"]).sum() < 30
    assert len(training_rows(key, corpus)) == corpus["correct"].sum()
    keep_all = key.model_copy(update={"teacher": keep_correct.model_copy(update={"filter": "all"})})
    assert len(training_rows(keep_all, corpus)) == 700
    assert keep_all.corpus_id == key.corpus_id  # a corpus keeps every row: the filter is the cell's


def _math_row(problem: str, gold: str, **outputs: str) -> dict:
    """A row shaped like the paper's MATH release files (math_gemini_level1_ranked.json)."""
    return {"problem": problem, "level": "Level 2", "type": "Prealgebra",
            "solution": f"Counting gives $\\boxed{{{gold}}}$.", "output": gold, **outputs}


def test_math_release_reads_the_cot_from_the_teachers_column_and_the_gold_from_output(tmp_path):
    from study.core.datasets import Problem

    release = tmp_path / "math_gemini_level1_ranked.json"
    release.write_text(json.dumps([
        _math_row("How many prime dates?", "52", gemini_output="9 + 11 + 11 + 11 + 10 = 52. The answer is 52"),
        _math_row("Area of the pentagon?", "76", gemini_output="24 + 100 = 124. The answer is 124"),
        _math_row("Green paint?", "7", gemini_output="2 * 3 = 6. The answer is 6"),
    ]))
    problems = [Problem("m1", "How many prime dates?", "52"), Problem("m2", "Area of the pentagon?", "76"),
                Problem("m3", "Green paint?", "6")]
    frame, report = import_release(release, "math", problems)
    assert frame["rationale"].str.contains("The answer is").all()  # never the bare gold "52"
    assert frame["answer"].tolist() == ["52", "124", "6"] and frame["correct"].tolist() == [True, False, True]
    assert (report.correct, report.unreadable_golds, report.disagreeing_golds) == (2, 0, 1)
    assert "1 golds in the file differ from the data set" in report.line()
    assert "3 rows (rationale 'gemini_output' (conventions))" in report.line()


def test_math_mix_files_name_the_teacher_by_its_column(tmp_path):
    from study.core.datasets import Problem

    release = tmp_path / "math_mix_level2.json"
    release.write_text(json.dumps([_math_row("Half of one?", "\\frac{1}{2}", chatgpt_output="1/2. The answer is 0.5",
                                             gemini_output="The answer is 2")]))
    frame, _ = import_release(release, "math", [Problem("m", "Half of one?", "\\frac{1}{2}")], ("chatgpt", "mix"))
    assert frame.loc[0, "rationale"] == "1/2. The answer is 0.5" and frame.loc[0, "correct"]
    with pytest.raises(DataError, match=r"math_mix_level2.json: cannot tell which column is the teacher's rationale: "
                                        r"it has \[.*'chatgpt_output', 'gemini_output', .*'output'"):
        import_release(release, "math", [], ("llama",))


def test_an_output_beside_a_column_of_another_teacher_is_refused(tmp_path):
    release = tmp_path / "svamp_gemini_level1_ranked.json"
    release.write_text(json.dumps([{"instruction": "Q?", "output": "The answer is 1", "chatgpt_output": "The answer is 2"}]))
    with pytest.raises(DataError, match=r"cannot tell which column .* \['chatgpt_output', 'instruction', 'output'\]"):
        import_release(release, "svamp", [])


def test_a_math_file_without_a_teacher_column_is_no_cot_corpus(tmp_path):
    release = tmp_path / "math_gemini_level1_ranked.json"
    release.write_text(json.dumps([_math_row("Half of one?", "\\frac{1}{2}")]))
    with pytest.raises(DataError, match=r"its 'output' is the gold answer and it has no '<teacher>_output' column"):
        import_release(release, "math", [])


def test_a_datasets_info_file_names_the_columns(tmp_path):
    from study.core.datasets import Problem

    release = tmp_path / "svamp_tutor_level2_ranked.json"
    release.write_text(json.dumps([{"q": "Tom has 2 apples.", "ask": "How many?", "why": "He has 2. The answer is 2"}]))
    info = {"svamp_tutor": {"file_name": release.name, "columns": {"prompt": "q", "query": "ask", "response": "why"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))  # found beside the file
    frame, report = import_release(release, "svamp", [Problem("p", "Tom has 2 apples. How many?", "2")])
    assert report.matched == 1 and report.correct == 1 and frame.loc[0, "rationale"] == "He has 2. The answer is 2"
    assert "(rationale 'why' (dataset_info.json entry 'svamp_tutor'))" in report.line()
    elsewhere = tmp_path / "info" / "mine.json"  # or named by the teacher's `dataset_info:`
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps({**info, "again": {"file_name": release.name, "columns": {"prompt": "q", "response": "ask"}}}))
    with pytest.raises(DataError, match=r"mine.json: entries \['again', 'svamp_tutor'\] give svamp_tutor_level2_ranked.json "
                                        r"different columns"):
        import_release(release, "svamp", [], dataset_info=elsewhere)
    elsewhere.write_text(json.dumps({"x": {"file_name": release.name, "formatting": "sharegpt", "columns": {"messages": "m"}}}))
    with pytest.raises(DataError, match=r"mine.json: entry 'x': expected alpaca columns with 'prompt' and 'response'"):
        import_release(release, "svamp", [], dataset_info=elsewhere)


def test_the_teachers_dataset_info_is_found_under_data_dir(tmp_path):
    teacher = _teacher(Path("cot"), dataset_info="cot/dataset_info.json")
    teacher = teacher.relocate_files(lambda location: str(tmp_path / location))
    assert teacher.dataset_info == str(tmp_path / "cot/dataset_info.json")
    key = CorpusKey(dataset=DatasetSpec(name="svamp"), teacher=_teacher(Path("cot")), granularity=2, format="cot")
    moved = key.model_copy(update={"teacher": teacher})
    assert moved.corpus_id == key.corpus_id  # where the columns are described is no part of the corpus


def test_a_release_that_matches_no_training_question_is_refused(tmp_path, shared_data):
    release = tmp_path / "svamp_tutor_level2_ranked.json"
    release.write_text(json.dumps([{"instruction": "A question of another data set?", "output": "The answer is 3"}]))
    teacher = ReleasedTeacher(kind="released", name="tutor", files=[str(release)])
    key = CorpusKey(dataset=DatasetSpec(name="svamp", path=str(shared_data / "svamp")), teacher=teacher, granularity=2,
                    format="cot")
    with pytest.raises(DataError, match=r"svamp_tutor_level2_ranked.json: none of its 1 rows matches a training "
                                        r"question of 'svamp'"):
        released_corpus(key, load_split(key.dataset, "train"))


def test_choice_golds_of_an_answer_only_release_are_read_and_the_unreadable_counted(tmp_path, capsys):
    answers = tmp_path / "aqua_only_ans.json"
    answers.write_text(json.dumps([{"instruction": f"Trip {i}: how far? Answer Choices: (A) 3 (B) 2.5 (C) 2.25 (D) 1.5 "
                                                   f"(E) 4", "output": out}
                                   for i, out in enumerate(["Option B", "2.25", "x = 1.5 so the answer is D", "5 km"])]))
    problems = problems_from_answer_file("aqua", answers)
    assert [p.answer for p in problems] == ["B", "C", "D"]
    assert "aqua_only_ans.json: 1 of 4 gold answers cannot be read (e.g. '5 km')" in capsys.readouterr().out
    frame, report = import_release(answers, "aqua", problems)
    assert frame["answer"].tolist()[:3] == ["B", "C", "D"] and pd.isna(frame.loc[3, "answer"])
    assert (report.correct, report.matched, report.unextractable) == (3, 3, 1)


def test_the_papers_math_file_gives_golds_and_its_questions_match_a_teacher_file(tmp_path, shared_data):
    """paper/math/train_paper.json is the MATH release's own file: `output` is the gold."""
    problems = problems_from_answer_file("math", shared_data / "paper/math/train_paper.json")
    assert len(problems) == 1297 and problems[0].answer == "52"
    real = json.loads((shared_data / "paper/math/train_paper.json").read_text())[:2]
    release = tmp_path / "math_llama_level3_ranked.json"
    release.write_text(json.dumps([{**real[0], "llama_output": "9 + 11 + 11 + 11 + 10 = 52. The answer is 52"},
                                   {**real[1], "llama_output": "100 - 24 = 74. The answer is 74"}]))
    frame, report = import_release(release, "math", problems)
    assert (report.matched, report.correct, report.disagreeing_golds) == (2, 1, 0)
    assert frame["gold"].tolist() == ["52", "76"] and frame["answer"].tolist() == ["52", "74"]
