import re
from pathlib import Path

import pandas as pd
import pytest

from study.core.datasets import extract_answer, load_split
from study.core.spec import DatasetSpec
from study.core.program_render import parse_program_model_id, program_model_id, render

REASONING_FORMATS = ("cot", "answer_first", "bsm", "rar", "symbolic")
PROBLEMS = load_split(DatasetSpec(name="arith"), "train")[:60]


def _sentences(text: str) -> int:
    return len(re.findall(r"[.?!](?:\s|$)", text))


@pytest.mark.parametrize("fmt", REASONING_FORMATS)
def test_detail_grows_with_granularity(fmt):
    for problem in PROBLEMS:
        lengths = [len(render(problem, level, fmt)) for level in range(1, 7)]
        assert lengths == sorted(lengths) and lengths[0] < lengths[-1], (fmt, problem.question, lengths)
        equations = [render(problem, level, fmt).count("=") for level in range(1, 7)]
        assert equations == sorted(equations)
    # level 1 is one terse sentence of reasoning; level 6 spells out every step
    problem = next(p for p in PROBLEMS if len(p.steps) >= 3)
    assert _sentences(render(problem, 1, "cot")) == 2  # the reasoning + "The answer is X."
    assert _sentences(render(problem, 6, "cot")) > 3 * len(problem.steps)


@pytest.mark.parametrize("fmt", [*REASONING_FORMATS, "answer_only", "human"])
def test_final_answer_is_always_extractable(fmt):
    for problem in PROBLEMS:
        for level in (range(1, 7) if fmt in REASONING_FORMATS else [None]):
            assert extract_answer("arith", render(problem, level, fmt)) == problem.answer


def test_formats_have_their_shape():
    problem = PROBLEMS[0]
    assert render(problem, 3, "answer_first").startswith(f"The answer is {problem.answer}.")
    assert render(problem, 3, "cot").endswith(f"The answer is {problem.answer}.")
    assert "Sub-question 2:" in render(problem, 3, "bsm") or len(problem.steps) == 1
    assert render(problem, 3, "rar").startswith("Rephrased question:")
    assert "x1 =" in render(problem, 3, "symbolic")
    assert render(problem, None, "answer_only") == f"The answer is {problem.answer}."


def test_reasoning_formats_need_a_level():
    with pytest.raises(ValueError, match="needs a granularity"):
        render(PROBLEMS[0], None, "cot")


def test_model_ids_round_trip():
    assert parse_program_model_id(program_model_id("prog", 4, "bsm")) == (4, "bsm")
    with pytest.raises(ValueError, match="not a program-teacher model id"):
        parse_program_model_id("gpt-4o")


@pytest.mark.ray
def test_rendered_in_process_the_program_teacher_gives_its_served_rows_and_ids(tmp_path, ray_local):
    from conftest import small_spec

    from study.core.cells import corpus_keys, expand_grid
    from study.core.corpora import load_corpus
    from study.core.spec import parse_spec
    from study.run.studies import prepare_storage
    from study.teachers.generate import build_corpora

    frames, ids = {}, {}
    for serve in (True, False):
        spec = parse_spec(small_spec(tmp_path / str(serve), teachers=[{"kind": "program", "name": "program",
                                                                       "serve": serve}]))
        paths, _ = prepare_storage(spec)
        (key,) = [k for k in corpus_keys(spec) if k.teacher is not None]
        build_corpora(spec, paths, [key])
        frames[serve] = load_corpus(paths, key)
        assert (paths.generation_shards(key.corpus_id) is not None
                and (Path(paths.generation_shards(key.corpus_id)).exists() == serve))  # asked over HTTP only when served
        ids[serve] = [cell.cell_id for cell in expand_grid(spec)]
    assert ids[True] == ids[False]  # `serve` is in no id
    usage = ["prompt_tokens", "completion_tokens"]
    pd.testing.assert_frame_equal(frames[True].drop(columns=usage), frames[False].drop(columns=usage))
