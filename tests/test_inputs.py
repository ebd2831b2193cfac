"""Where data comes from (data_dir, path), ids that do not depend on it, checks before anything
runs, `cotstudy plan` on the paper's grid, and `cotstudy corpus-stats`."""

import json

import pandas as pd
import pytest
from conftest import REPO, small_spec, write_spec

from study.core.cells import corpus_keys, expand_grid
from study.run.cli import main
from study.core.datasets import DataError
from study.run.inputs import check_inputs
from study.core.spec import load_spec, parse_spec

SVAMP_TEACHERS = [
    {"kind": "released", "name": "chatgpt", "release_name": "ChatGPT",
     "files": ["svamp/cot/SVAMP_ChatGPT_level*_ranked.json", "svamp/cot/0_SVAMP_chatgpt_level*.json"],
     "levels_by_format": {"cot": [1, 3], "bsm": [3]}},
    {"kind": "released", "name": "llama", "files": ["svamp/cot/SVAMP_llama_level*_ranked.json"]},
]


def _svamp_spec(tmp_path, **overrides):
    fields = {"datasets": [{"name": "svamp"}], "teachers": SVAMP_TEACHERS, "granularities": [1, 3],
              "formats": ["cot", "bsm", "answer_only", "human"]}
    return small_spec(tmp_path / "out", **{**fields, **overrides})


def test_relative_locations_resolve_against_data_dir(tmp_path, shared_data):
    path = write_spec(tmp_path / "spec.yaml", _svamp_spec(tmp_path))
    spec = load_spec(path, data_dir=str(shared_data))
    assert spec.datasets[0].path == str(shared_data / "svamp")
    assert spec.teachers[0].files[0] == str(shared_data / "svamp/cot/SVAMP_ChatGPT_level*_ranked.json")
    relative = write_spec(tmp_path / "rel.yaml", _svamp_spec(tmp_path, data_dir="data"))
    assert load_spec(relative).data_dir == str((tmp_path / "data").resolve())  # relative to the spec file


def test_ids_do_not_depend_on_where_the_data_is(tmp_path):
    raw = _svamp_spec(tmp_path)
    here = load_spec(write_spec(tmp_path / "a.yaml", raw), data_dir=str(tmp_path / "here"))
    there = load_spec(write_spec(tmp_path / "b.yaml", raw), data_dir=str(tmp_path / "there"))
    assert [c.cell_id for c in expand_grid(here)] == [c.cell_id for c in expand_grid(there)]
    changed = parse_spec({**raw, "teachers": [{**SVAMP_TEACHERS[0], "filter": "all"}, SVAMP_TEACHERS[1]]})
    original = parse_spec(raw)
    assert {k.corpus_id for k in corpus_keys(changed)} == {k.corpus_id for k in corpus_keys(original)}
    assert {c.cell_id for c in expand_grid(changed)} != {c.cell_id for c in expand_grid(original)}


def test_levels_by_format_shapes_the_grid(tmp_path):
    names = [key.name for key in corpus_keys(parse_spec(_svamp_spec(tmp_path)))]
    assert names == ["svamp.chatgpt.L1.cot", "svamp.chatgpt.L3.cot", "svamp.llama.L1.cot", "svamp.llama.L3.cot",
                     "svamp.chatgpt.L3.bsm", "svamp.llama.L1.bsm", "svamp.llama.L3.bsm",
                     "svamp.answer_only", "svamp.human"]


def test_check_inputs_finds_every_corpus_source_or_names_the_missing_one(tmp_path, shared_data):
    path = write_spec(tmp_path / "spec.yaml", _svamp_spec(tmp_path))
    with pytest.raises(DataError, match=r"teacher 'llama': no released file for svamp, level 1, format bsm"):
        check_inputs(load_spec(path, data_dir=str(shared_data)))
    llama_cot_only = {**SVAMP_TEACHERS[1], "levels_by_format": {"cot": [1, 3]}}
    fixed = write_spec(tmp_path / "fixed.yaml", _svamp_spec(tmp_path, teachers=[SVAMP_TEACHERS[0], llama_cot_only]))
    check_inputs(load_spec(fixed, data_dir=str(shared_data)))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teachers": [{"kind": "program", "name": "program"}], "formats": ["cot"]},
     r"teacher 'program' \(program\) renders structured solutions, which only 'arith' has"),
    ({"datasets": [{"name": "svamp", "path": "nowhere"}], "teachers": [], "formats": ["answer_only"]},
     r"dataset 'svamp': no folder .*nowhere"),
])
def test_bad_data_choices_fail_before_anything_runs(tmp_path, shared_data, overrides, message):
    base = {"datasets": [{"name": "svamp"}], "granularities": [1]}
    path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", **{**base, **overrides}))
    with pytest.raises(DataError, match=message):
        check_inputs(load_spec(path, data_dir=str(shared_data)))


def test_human_format_needs_a_human_rationale(tmp_path):
    rows = {"id": "q", "question": {"stem": "s", "choices": [{"label": "A", "text": "a"}]}, "answerKey": "A"}
    (tmp_path / "csqa").mkdir()
    for name in ("train_rand_split.jsonl", "dev_rand_split.jsonl"):
        (tmp_path / "csqa" / name).write_text(json.dumps(rows) + "\n")
    path = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", datasets=[{"name": "csqa", "split": "official"}], teachers=[],
                                                         formats=["human"]))
    with pytest.raises(DataError, match=r"dataset 'csqa' has no human rationale; drop format 'human'"):
        check_inputs(load_spec(path, data_dir=str(tmp_path)))
    assert main(["plan", str(path), "--data-dir", str(tmp_path)]) == 2


def test_paper_spec_validates_and_plans_168_cells(capsys, shared_data):
    """Planned in full, and every cell fits a node type of the shipped cluster.yaml: micro-batches
    of 4,096 tokens with activation checkpointing, the 2-3B students on its A100-80 nodes, and BLOOM
    trained on padded rows (its attention cannot keep packed documents apart)."""
    assert main(["plan", str(REPO / "specs/svamp-paper.yaml"), "--data-dir", str(shared_data),
                 "--cluster", str(REPO / "cluster.yaml")]) == 0
    out = capsys.readouterr().out
    assert "study svamp-paper: 168 cells, 24 corpora" in out
    assert "svamp.chatgpt.L5.symbolic.llama-3.2-3b.sft.s100" in out and "svamp.llama.L5" not in out
    assert "refused" not in out and "NO FIT" not in out
    assert main(["plan", str(REPO / "specs/svamp-paper.yaml"), "--data-dir", str(shared_data), "--gpu", "a10g"]) == 2
    assert "fits no node type of --gpu a10g" in capsys.readouterr().out  # the 2-3B students need more than 24 GB


def test_corpus_stats_for_files_and_for_a_spec(tmp_path, capsys, shared_data):
    cot = shared_data / "svamp" / "cot"
    out = tmp_path / "stats"
    assert main(["corpus-stats", "--files", str(cot / "SVAMP_gemini_level*_ranked.json"), str(cot / "*human*.json"),
                 "--data-dir", str(shared_data), "--out", str(out)]) == 0
    table = pd.read_csv(out / "corpus_stats.csv")
    gemini = table[table["teacher"] == "gemini"].sort_values("granularity")
    assert gemini["granularity"].tolist() == [1, 2, 3, 4, 5, 6] and (gemini["rows"] == 700).all()
    assert gemini["rationale_tokens_mean"].iloc[-1] > 1.3 * gemini["rationale_tokens_mean"].iloc[0]
    assert (gemini["rationale_tokens_p95"] >= gemini["rationale_tokens_p50"]).all()
    assert table.loc[table["format"] == "human", "correct_rate"].item() == 1.0
    assert (table["unextractable_rate"] == 0).all() and (out / "corpus_lengths.png").stat().st_size > 10_000
    assert "| svamp" in capsys.readouterr().out

    spec = write_spec(tmp_path / "spec.yaml", _svamp_spec(tmp_path, teachers=[SVAMP_TEACHERS[0]]))
    assert main(["corpus-stats", str(spec), "--data-dir", str(shared_data), "--out", str(tmp_path / "s2")]) == 0
    by_spec = pd.read_csv(tmp_path / "s2" / "corpus_stats.csv")
    assert len(by_spec) == 5 and set(by_spec["format"]) == {"cot", "bsm", "answer_only", "human"}


def test_corpus_stats_takes_gold_from_the_answer_only_file_without_the_data_set(tmp_path, capsys, shared_data):
    cot = shared_data / "svamp" / "cot"
    assert main(["corpus-stats", "--files", str(cot / "SVAMP_llama_level1_ranked.json"), str(cot / "SVAMP_only_ans.json"),
                 "--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "o")]) == 0
    assert "gold answers from" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "o" / "corpus_stats.csv")
    assert (table["unmatched"] == 0).all() and table["correct_rate"].min() > 0.99
    assert main(["corpus-stats", "--files", str(cot / "SVAMP_llama_level1_ranked.json"),
                 "--data-dir", str(tmp_path / "no-data")]) == 2
    assert "no gold answers for svamp" in capsys.readouterr().err


def test_corpus_stats_renders_a_program_corpus_not_built_yet_at_its_level(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", granularities=[1, 6]))
    assert main(["corpus-stats", str(spec), "--out", str(tmp_path / "stats")]) == 0
    table = pd.read_csv(tmp_path / "stats" / "corpus_stats.csv").set_index(["format", "granularity"], drop=False)
    level_1, level_6 = table.loc[("cot", 1)], table.loc[("cot", 6)]
    assert level_6["rationale_tokens_mean"] > 2 * level_1["rationale_tokens_mean"]
    assert (table["correct_rate"] == 1.0).all() and "not built yet" in table["source"].iloc[0]
