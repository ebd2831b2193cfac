"""Choice golds as released files write them: read to a label where every reading agrees,
counted and left out where not."""

import json

import pytest

from study.core.datasets import Choice, DatasetSpec, inline_choices, load_split, read_gold, score

OPTIONS = (Choice("A", "12"), Choice("B", "0.25%"), Choice("C", "7 km"), Choice("D", "None of these"),
           Choice("E", "30 cm"))


@pytest.mark.parametrize(("written", "label"), [
    ("C", "C"), ("c", "C"), ("B.", "B"), ("(B)", "B"), ("'D'", "D"), ("Option B", "B"), ("OPTION e", "E"),
    ("option 'A'", "A"), (":(OptionC", "C"), ("- D", "D"), ("is E.", "E"), ("isB", "B"),
    ("C 7 km", "C"), ("A12", "A"), ("E. 30 cm", "E"), ("C: 7 km.", "C"), ("B (so the rate is 0.25%).", "B"),
    ("A Explanation: 3 * 4 = 12, which is option A.", "A"),
    ("The distance is 7 km in all, so the answer is C", "C"), ("we get 12 ANSWER:A", "A"),
    ("speed = 7 km Answer - C", "C"), ("2 * 6 = 12 Hence A.", "A"), ("20 - 8 = 12. A", "A"),
    ("Each term grows by 3. E is correct.", "E"), ("CIt may be tempting ... Choice E is correct.", "E"), ("0.25%", "B"), ("none of these", "D"), ("30cm", "E"),
])
def test_each_written_shape_reads_as_its_label(written, label):
    assert read_gold("aqua", written, OPTIONS) == label


@pytest.mark.parametrize("written", [
    "A train leaves at noon and covers 7 km",      # the article "A" is prose, not option A
    "E: 2s - r = 4. Hence option A is the greatest.",  # two readings that disagree
    "C To find it, 3 + 4 = 7, so D is the answer",
    "B 30 cm",                                      # the letter says B, the value is option E's text
    "D 7 km",
    "13 km",                                        # no label, and no option's text
    "",
])
def test_readings_that_disagree_or_are_absent_are_unreadable(written):
    assert read_gold("aqua", written, OPTIONS) is None


def test_a_lone_letter_at_the_end_of_prose_is_not_an_answer():
    assert read_gold("aqua", "Store A pays less than Store B.", OPTIONS) is None
    assert read_gold("aqua", "3 * 4 = 12, therefore A.", OPTIONS) == "A"


def test_options_written_inside_the_question_in_the_papers_three_shapes():
    aqua = "How far? Answer Choices: (A) 3 (B) 2.5 (C) 2.25 (D) 1.5 (E) 4"
    csqa = "Q: Where? Answer choices: A: race track, B: populated areas, C: the desert"
    test = "Where? Answer Choices:\nA. bank\nB. library\nC. new york\n"
    stray = "Q: Learned? Answer choices: A: turtles, B: seals (C) clapping, C: ducks, D: dogs"
    assert [c.text for c in inline_choices(aqua)] == ["3", "2.5", "2.25", "1.5", "4"]
    assert [(c.label, c.text) for c in inline_choices(csqa)][1] == ("B", "populated areas")
    assert [c.text for c in inline_choices(test)] == ["bank", "library", "new york"]
    assert [c.label for c in inline_choices(stray)] == ["A", "B", "C", "D"]
    assert inline_choices("No options here?") == ()
    assert read_gold("aqua", "2.25", inline_choices(aqua)) == "C"


def test_other_answer_kinds_read_a_files_gold():
    assert read_gold("math", "5n+10") == "5n+10" and read_gold("math", "so $\\boxed{\\frac12}$.") is not None
    assert read_gold("svamp", "145.0") == "145" and read_gold("strategyqa", "False") == "no"


def test_an_alpaca_file_reads_golds_and_counts_the_unreadable(tmp_path, capsys):
    rows = [{"instruction": "How far? Answer Choices: (A) 3 (B) 2.5 (C) 2.25 (D) 1.5 (E) 4", "output": out}
            for out in ("Option B", "2.25", "(D)", "B 4", "the speed is 1.5")]
    (tmp_path / "train_paper.json").write_text(json.dumps(rows))
    spec = DatasetSpec(name="aqua", path=str(tmp_path), train_file="train_paper.json", test_file="train_paper.json")
    problems = load_split(spec, "train")
    assert [p.answer for p in problems] == ["B", "C", "D"]
    assert score("aqua", "So it is 2.5 km/h. The answer is B", problems[0].answer)
    assert "train_paper.json: 2 of 5 gold answers cannot be read" in capsys.readouterr().out


def test_the_papers_aqua_answer_file_leaves_few_golds_unread(shared_data, capsys):
    """2,016 of its 6,940 golds are not a bare letter; all but 18 of them are read."""
    spec = DatasetSpec(name="aqua", path=str(shared_data / "paper/aqua"), train_file="train_paper.json",
                       test_file="train_paper.json")
    problems = load_split(spec, "train")
    assert len(problems) == 6940 - 18
    assert {p.answer for p in problems} == {"A", "B", "C", "D", "E"}
    assert "train_paper.json: 18 of 6940 gold answers cannot be read" in capsys.readouterr().out


def test_a_data_sets_own_parser_reads_its_gold_the_same_way():
    from study.core.datasets.sources import parse_qa_choices

    record = {"id": "q1", "question": {"stem": "Where?", "choices": [{"label": "A", "text": "bank"},
                                                                     {"label": "B", "text": "river"}]}}
    assert parse_qa_choices({**record, "answerKey": "(b)"}, "x").answer == "B"
    assert parse_qa_choices({**record, "answerKey": "river"}, "x").answer == "B"
    with pytest.raises(ValueError, match=r"field 'answerKey' is 'C', not one of the choices \['A', 'B'\]"):
        parse_qa_choices({**record, "answerKey": "C"}, "x")
