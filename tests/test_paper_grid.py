"""specs/paper-grid.yaml: the paper's whole grid as one spec, planned against a data folder laid
out as the README says (release/ = a copy of the paper's data/ folder)."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, small_spec

from study.core.cells import corpus_keys, expand_grid
from study.core.datasets import RELEASE_ALIASES, DatasetSpec, load_split, problem_text
from study.core.spec import SpecError, load_spec, parse_spec
from study.run.cli import main

GRID = REPO / "specs" / "paper-grid.yaml"
LEVELS = range(1, 7)


def _release_names() -> list[str]:
    """The teacher files of the paper's data/ folder, as its dataset_info.json names them, and a
    few of its other files that no teacher of the grid reads."""
    names = [f"SVAMP_{t}_level{n}_ranked.json" for t in ("ChatGPT", "gemini") for n in LEVELS]
    names += [f"SVAMP_llama_level{n}_ranked.json" for n in range(1, 5)]
    names += [f"gsm8k_{t}_level{n}_ranked.json" for t in ("ChatGPT", "gemini") for n in LEVELS]
    names += [f"gsm8k_llama_level{n}_ranked.json" for n in range(1, 6)]
    names += [f"0_{d}_chatgpt_level{n}{f}.json" for d in ("SVAMP", "gsm8k") for n in (3, 5) for f in ("BSM", "RaR", "SYM")]
    names += [f"aqua_{t}_level{n}_ranked.json" for t in ("chatgpt", "gemini", "llama") for n in LEVELS]
    names += ["0_aqua_chatgpt_level5Sym.json"] + [f"0_aqua_chatgpt_level{n}{f}.json" for n in (5, 6) for f in ("BSM", "RaR")]
    names += [f"{d}_{t}_level{n}_ranked.json" for d in ("math", "csqa", "obqa", "stqa") for t in ("gemini", "llama")
              for n in LEVELS]
    names += [f"math_mix_level{n}.json" for n in LEVELS]
    names += [f"{d}_chatgpt_level_{n}_ranked.json" for d in ("commonsenseQA", "openbookQA", "strategyQA") for n in LEVELS]
    names += [f"openbookqa_chatgpt_{f}_level3_ranked.json" for f in ("bsm", "rar", "symbolic")]
    return names + ["openbookQA_ChatGPT_0_shot_with_gt_ranked.json", "aqua_only_ans.json", "math_human.json",
                    "stqa_human_annotation.json"]


def _write(path: Path, rows: list[dict], lines: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) if lines else json.dumps(rows))


STAND_IN_QUESTION = {"gsm8k": "What is 1+1?", "math": "What is 1+1?"}  # choice sets: "Q: 1+1? Answer choices: ..."


def _release_question(file_name: str, svamp_question: str) -> str:
    """A training question of the data set a release file names (released rows must match one)."""
    first = next(part for part in file_name.split("_") if part != "0").lower()
    dataset = RELEASE_ALIASES[first]
    if dataset == "svamp":
        return svamp_question
    return STAND_IN_QUESTION.get(dataset, "Q: 1+1? Answer choices: A: one, B: two")


def _paper_data(root: Path, shared_data: Path) -> Path:
    """A small data folder in the README's layout: real SVAMP, stand-ins for the others."""
    shutil.copytree(shared_data / "svamp", root / "svamp", ignore=shutil.ignore_patterns("cot"))
    svamp_question = problem_text(load_split(DatasetSpec(name="svamp", path=str(root / "svamp")), "train")[0])
    for name in _release_names():
        question = _release_question(name, svamp_question)
        row = ({"problem": question, "output": "2", "chatgpt_output": "1+1=2. The answer is 2"}
               if name.startswith("math") else {"instruction": question, "output": "1+1=2. The answer is 2"})
        _write(root / "release" / name, [row])
    gsm = [{"question": "What is 1+1?", "answer": "1 + 1 = 2\n#### 2"}]
    _write(root / "gsm8k/train.jsonl", gsm, lines=True)
    _write(root / "gsm8k/test.jsonl", gsm, lines=True)
    choices = "Answer choices: A: one, B: two"
    for name, gold in (("aqua", "B"), ("csqa", "B"), ("obqa", "B"), ("strategyqa", "True")):
        _write(root / "paper" / name / "train_paper.json", [{"instruction": f"Q: 1+1? {choices}", "output": gold}])
        _write(root / "paper" / name / "test_paper.json", [{"instruction": f"Q: 2+0? {choices}", "label": gold}])
    math = [{"problem": "What is 1+1?", "level": "Level 1", "type": "Algebra", "solution": "$2$", "output": "2"}]
    _write(root / "paper/math/train_paper.json", math)
    _write(root / "paper/math/test_paper.json", math)
    return root


def test_the_paper_grid_covers_what_the_paper_released():
    spec = load_spec(GRID, data_dir="/nonexistent")
    keys = corpus_keys(spec)
    by_dataset = {d.name: [k for k in keys if k.dataset.name == d.name] for d in spec.datasets}
    assert [d.split for d in spec.datasets] == ["paper"] * 7 and len(spec.students) == 7
    svamp = {(k.teacher_name, k.granularity, k.format) for k in by_dataset["svamp"]}
    assert ("llama", 4, "cot") in svamp and ("llama", 5, "cot") not in svamp and ("chatgpt", 5, "bsm") in svamp
    assert {k.granularity for k in by_dataset["gsm8k"] if k.teacher_name == "llama"} == {1, 2, 3, 4, 5}
    assert {k.format for k in by_dataset["csqa"]} == {"cot", "answer_only"}  # no human rationale on its paper split
    assert len(by_dataset["svamp"]) == 24  # as specs/svamp-paper.yaml
    assert len(expand_grid(spec)) == 7 * len(keys)


def test_plan_accepts_the_paper_grid_on_a_copy_of_the_papers_data(tmp_path, shared_data, capsys):
    data = _paper_data(tmp_path / "data", shared_data)
    assert main(["plan", str(GRID), "--data-dir", str(data), "--storage", str(tmp_path / "out")]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    cells = len(expand_grid(load_spec(GRID, data_dir=str(data))))
    assert f"study paper-grid: {cells} cells, 153 corpora" in out
    assert "svamp        paper split     train     700  test    300" in out
    assert "obqa.chatgpt.L3.symbolic" in out and "math.chatgpt.L6.cot" in out


def test_plan_accepts_the_paper_grid_on_the_shared_data(shared_data, capsys):
    missing = [p for p in ("release", "paper/math/test_paper.json") if not (shared_data / p).exists()]
    if missing:
        pytest.skip(f"{shared_data} lacks {missing}: the paper's released CoT of the six other data sets and "
                    "its MATH test set are not here")
    assert main(["plan", str(GRID), "--data-dir", str(shared_data), "--cluster", str(REPO / "cluster.yaml")]) == 0, \
        capsys.readouterr().err
    assert "NO FIT" not in capsys.readouterr().out


@pytest.mark.parametrize(("overrides", "message"), [
    ({"formats_by_dataset": {"gsm8k": ["cot"]}}, r"formats_by_dataset: 'gsm8k' is not among the study's datasets"),
    ({"formats_by_dataset": {"arith": ["human"]}}, r"formats_by_dataset\.arith: \['human'\] not among the study's formats"),
    ({"teachers": [{"kind": "program", "name": "program", "levels_by_dataset": {"arith": {"cot": [7]}}}]},
     r"teachers\[0\]\.levels_by_dataset: arith: cot: granularity \[7\] is outside 1-6"),
])
def test_per_data_set_grid_restrictions_are_checked(tmp_path, overrides, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(small_spec(tmp_path, **overrides))


def test_a_teachers_levels_by_dataset_and_formats_by_dataset_shape_the_grid(tmp_path):
    raw = small_spec(tmp_path, granularities=[1, 3], formats=["cot", "answer_only"])
    raw["teachers"] = [{"kind": "program", "name": "program", "levels_by_dataset": {"arith": {"cot": [1]}}}]
    assert [(k.granularity, k.format) for k in corpus_keys(parse_spec(raw))] == [(1, "cot"), (None, "answer_only")]
    only_cot = parse_spec({**raw, "formats_by_dataset": {"arith": ["cot"]}})
    assert [(k.granularity, k.format) for k in corpus_keys(only_cot)] == [(1, "cot")]
