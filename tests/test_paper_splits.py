"""The paper's train / test splits (`split: paper`, the default) of the seven data sets, read from
the real files of ../shared/data; the official splits stay one `split: official` away."""

import json
import shutil

import pandas as pd
import pytest
from conftest import small_spec, write_spec

from study.core.datasets import REGISTRY, DataError, DatasetSpec, load_split
from study.core.spec import SpecError, load_spec, parse_spec
from study.run.cli import main

# the paper's README table (train / test); AQuA's train is its file's 6,940 rows (the README: 6.1k)
PAPER_SIZES = {"svamp": (700, 300), "gsm8k": (7473, 1319), "aqua": (6940, 254), "csqa": (9740, 1221),
               "obqa": (4957, 500), "strategyqa": (2000, 290)}
MATH_PAPER_TRAIN = 1297
# training golds the choice gold reader cannot read unambiguously: left out, counted in a warning
UNREADABLE_TRAIN_GOLDS = {"aqua": 18}


def _paper(name: str, data_dir) -> DatasetSpec:
    """The data set's paper split where its descriptor says the files are, under `data_dir`."""
    spec = DatasetSpec(name=name)
    return spec.model_copy(update={"path": str(data_dir / spec.folder())})


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_every_paper_split_has_the_papers_sizes(shared_data, name, capsys):
    spec = _paper(name, shared_data)
    sizes = (len(load_split(spec, "train")), len(load_split(spec, "test")))
    unreadable = UNREADABLE_TRAIN_GOLDS.get(name, 0)
    assert sizes == (PAPER_SIZES[name][0] - unreadable, PAPER_SIZES[name][1])
    if unreadable:
        assert f"{unreadable} of {PAPER_SIZES[name][0]} gold answers cannot be read" in capsys.readouterr().out
    assert REGISTRY[name].split_source("paper").sizes == PAPER_SIZES[name]  # what `cotstudy plan` compares with


def test_math_paper_train_has_1297_problems_of_four_subjects(shared_data, tmp_path):
    folder = tmp_path / "paper" / "math"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "paper/math/train_paper.json", folder / "train_paper.json")
    (folder / "test_paper.json").write_text(json.dumps(
        [{"problem": "What is $1+1$?", "level": "Level 1", "type": "Algebra", "solution": "$2$.", "output": "2"}]))
    train = load_split(_paper("math", tmp_path), "train")
    assert len(train) == MATH_PAPER_TRAIN
    rows = json.loads((folder / "train_paper.json").read_text())
    assert {row["type"] for row in rows} == {"Prealgebra", "CountingAndProbability", "NumberTheory", "Algebra"}
    # gold is `output`, also where the solution boxes no answer ("There were $52$ prime dates")
    assert [p.answer for p in train] == [row["output"].strip() for row in rows]
    assert train[0].answer == "52" and "\\boxed" not in train[0].human_rationale


def test_math_paper_split_without_its_test_set_is_refused_naming_the_file(shared_data):
    with pytest.raises(DataError) as error:
        load_split(_paper("math", shared_data), "train")
    message = str(error.value)
    assert "test_paper.json" in message and str(shared_data / "paper" / "math") in message
    assert "paper split" in message and "not release" in message and "split: official" in message


def test_plan_refuses_a_math_paper_split_before_anything_starts(shared_data, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", datasets=[{"name": "math"}], teachers=[], granularities=[], formats=["answer_only"]))
    assert main(["plan", str(spec), "--data-dir", str(shared_data)]) == 2
    err = capsys.readouterr().err
    assert "dataset 'math': no test file of its paper split" in err and "test_paper.json" in err
    assert not (tmp_path / "out").exists()  # nothing was created


def test_plan_prints_each_splits_sizes(shared_data, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", datasets=[{"name": "csqa"}, {"name": "strategyqa"}, {"name": "gsm8k"}],
        teachers=[], granularities=[], formats=["answer_only"]))
    assert main(["plan", str(spec), "--data-dir", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "csqa         paper split     train   9,740  test  1,221" in out
    assert "strategyqa   paper split     train   2,000  test    290" in out
    assert "gsm8k        paper split     train   7,473  test  1,319" in out
    assert "documented" not in out


def test_plan_shows_the_documented_sizes_beside_other_files(tmp_path, capsys):
    folder = tmp_path / "paper" / "strategyqa"
    folder.mkdir(parents=True)
    (folder / "train_paper.json").write_text(json.dumps([{"instruction": "Is ice cold?", "output": "True"}] * 3))
    (folder / "test_paper.json").write_text(json.dumps([{"instruction": "Is fire cold?", "label": "False"}]))
    spec = write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", datasets=[{"name": "strategyqa"}], teachers=[], granularities=[], formats=["answer_only"]))
    assert main(["plan", str(spec), "--data-dir", str(tmp_path)]) == 0
    assert "train       3  test      1  (documented: 2,000 / 290)" in capsys.readouterr().out


def test_paper_rows_keep_the_papers_question_and_read_the_gold(shared_data):
    strategyqa = _paper("strategyqa", shared_data)
    assert {p.answer for p in load_split(strategyqa, "train")} == {"yes", "no"}  # `output` True / False
    assert {p.answer for p in load_split(strategyqa, "test")} == {"yes", "no"}  # `label` True / False
    csqa_train = load_split(_paper("csqa", shared_data), "train")
    assert csqa_train[0].question.startswith("Q: Sammy wanted") and "Answer choices: A: race track" in csqa_train[0].question
    assert {p.answer for p in csqa_train} == set("ABCDE") and csqa_train[0].choices == ()


def test_aqua_paper_golds_are_read_as_letters_and_its_test_reads_like_its_train(shared_data):
    aqua = _paper("aqua", shared_data)
    train, test = load_split(aqua, "train"), load_split(aqua, "test")
    rows = json.loads((shared_data / "paper/aqua/train_paper.json").read_text())
    bare = {row["instruction"].strip(): row["output"].strip() for row in rows if row["output"].strip() in set("ABCDE")}
    assert {p.answer for p in train} <= set("ABCDE")  # `(B)`, `Option B`, option text: read as their letter
    assert all(bare[p.question] == p.answer for p in train if p.question in bare)  # a bare letter stays itself
    assert "Answer Choices: (A)" in train[0].question
    assert " Answer Choices: (A) 5(√3 + 1) (B) " in test[0].question and test[0].choices == ()
    assert {p.answer for p in test} <= set("ABCDE")


def test_the_official_split_is_still_there(shared_data, tmp_path):
    folder = tmp_path / "strategyqa"
    folder.mkdir()
    rows = [{"qid": f"q{i}", "question": f"Is {i} even?", "answer": i % 2 == 0, "facts": []} for i in range(50)]
    (folder / "strategyqa_train.json").write_text(json.dumps(rows))
    raw = small_spec(tmp_path / "out", datasets=[{"name": "strategyqa", "split": "official"}], teachers=[],
                     granularities=[], formats=["answer_only"])
    spec = load_spec(write_spec(tmp_path / "spec.yaml", raw), data_dir=str(tmp_path))
    assert spec.datasets[0].path == str(folder)
    assert len(load_split(spec.datasets[0], "train")) + len(load_split(spec.datasets[0], "test")) == 50
    paper = load_spec(write_spec(tmp_path / "paper.yaml", {**raw, "datasets": [{"name": "strategyqa"}]}),
                      data_dir=str(shared_data))
    assert paper.datasets[0].path == str(shared_data / "paper" / "strategyqa")


@pytest.mark.parametrize(("dataset", "message"), [
    ({"name": "svamp", "split": "official"}, r"datasets\[0\]: split: dataset 'svamp' has no official split"),
    ({"name": "arith", "split": "official"}, r"datasets\[0\]: split: dataset 'arith' is generated"),
    ({"name": "csqa", "split": "dev"}, r"datasets\[0\]\.split: "),
    ({"name": "csqa", "hub": "tau/commonsense_qa"}, r"datasets\[0\]: hub: .*set `split: official`"),
])
def test_a_split_a_data_set_lacks_is_one_spec_error(tmp_path, dataset, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(small_spec(tmp_path, datasets=[dataset]))


def test_the_split_is_part_of_every_id(tmp_path):
    from study.core.cells import expand_grid

    raw = small_spec(tmp_path, datasets=[{"name": "csqa"}], teachers=[], granularities=[], formats=["answer_only"])
    paper = expand_grid(parse_spec(raw))
    official = expand_grid(parse_spec({**raw, "datasets": [{"name": "csqa", "split": "official"}]}))
    assert {c.cell_id for c in paper}.isdisjoint({c.cell_id for c in official})


def test_corpus_stats_reads_golds_from_the_paper_split_where_its_files_are(shared_data, tmp_path, capsys):
    rows = json.loads((shared_data / "paper/csqa/train_paper.json").read_text())[:3]
    release = tmp_path / "csqa_gemini_level1_ranked.json"
    release.write_text(json.dumps([{"instruction": r["instruction"], "output": f"So. The answer is {r['output']}"}
                                   for r in rows]))
    out = tmp_path / "stats"
    assert main(["corpus-stats", "--files", str(release), "--data-dir", str(shared_data), "--out", str(out)]) == 0
    assert "gold answers from" not in capsys.readouterr().out  # from <data_dir>/paper/csqa, not a release file
    table = pd.read_csv(out / "corpus_stats.csv")
    assert table["unmatched"].tolist() == [0] and table["correct_rate"].tolist() == [1.0]


@pytest.mark.parametrize("dataset", [d for d in REGISTRY.values() if not d.generated], ids=lambda d: d.name)
def test_every_data_set_declares_its_paper_split_as_data(dataset):
    paper = dataset.split_source("paper")
    assert paper.sizes is not None and paper.train_names
    assert paper.test_names or paper.divide is not None
    if dataset.paper is not None:  # a paper split of its own: its files under paper/<name>, no hub copy
        assert paper.folder == f"paper/{dataset.name}" and paper.hub_id is None and paper is not dataset.source
    assert ("official" in dataset.split_names()) == dataset.official
