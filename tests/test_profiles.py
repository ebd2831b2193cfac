"""evaluation.profile: the paper's answer rules on strings, its decoding per kind of task, beam
search through transformers (a batch equals one prompt at a time) and through vLLM (equal to
transformers; marked `vllm`), and both accuracies in every result."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest
import torch
from conftest import small_spec
from test_evaluate import FORCED, _train_forced_student
from test_teacher_serving import QUESTIONS, save_tiny_llama
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, StoppingCriteriaList

from study.core.datasets import Problem, dataset_info, extract_paper_answer, question_prompt, score, score_paper
from study.core import profiles
from study.core.profiles import PAPER_STOP_STRINGS, decoding
from study.core.results import CellResult, Measurements, column_dtypes
from study.core.spec import EvalSpec, SpecError, parse_spec
from trainables import evaluate as evaluate_module
from trainables import vllm_generate as vllm_module
from trainables.evaluate import check_beam_search, evaluate, finish_stopped_output, transformers_generate
from trainables.stops import StopStringStop
from trainables.vllm_generate import VllmEngineError, require_beam_search

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed: pip install 'cotstudy[cpu-llm]' (CPU) or 'cotstudy[gpu]'")


# ---------------------------------------------------------------- the paper's answer rules

@pytest.mark.parametrize("dataset, text, answer", [
    ("csqa", "The answer is B. On reflection, the answer is C.", "B"),  # commonsense: the first
    ("csqa", "It must be (B), a river.", None),  # no "the answer is <label>": no answer
    ("csqa", "The answer is: B", None),  # the label must follow at once
    ("strategyqa", "Fish swim. The answer is True.", "True"),
    ("strategyqa", "The answer is yes.", None),  # only True / False, as the paper reads them
    ("svamp", "The answer is 5. Wait, the answer is 7 apples.", "7"),  # math: the last phrase, its first number
    ("svamp", "He has 3 and then 12 more, 15 in all", "15"),  # no phrase: the last number
    ("gsm8k", "The answer is 1,250 dollars.", "1250"),
    ("aqua", "Both give 5. The answer is (C).", "C"),  # a choice task read as math
    ("math", "So x is 2. The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("math", "The answer is x = 4", "4"),
])
def test_the_paper_reads_answers_by_its_rules(dataset, text, answer):
    assert extract_paper_answer(dataset, text) == answer


def test_the_two_scorers_differ_where_the_rules_do():
    text = "The answer is B. On reflection, the answer is C."
    assert score_paper("csqa", text, "B") and not score("csqa", text, "B")  # the project's last phrase wins
    assert score_paper("strategyqa", "The answer is True.", "yes")  # the paper's test files write yes as True
    assert score("strategyqa", "The answer is yes.", "yes") and not score_paper("strategyqa", "The answer is yes.", "yes")


# ---------------------------------------------------------------- decoding per kind of task

def test_paper_decoding_follows_the_task_not_the_answer_type():
    assert dataset_info("aqua").answer_type == "choice" and dataset_info("aqua").task == "math"
    for dataset in ("csqa", "obqa", "strategyqa"):
        plan = decoding("paper", dataset, 256)
        assert (plan.beams, plan.max_new_tokens, plan.stop_at_answer, plan.bf16_on_gpu) == (5, 640, False, True)
    for dataset in ("svamp", "gsm8k", "aqua", "math", "arith"):
        assert (decoding("paper", dataset, 256).beams, decoding("paper", dataset, 256).max_new_tokens) == (1, 1024)
    robust = decoding("robust", "csqa", 77)
    assert (robust.beams, robust.max_new_tokens, robust.stop_strings, robust.stop_at_answer) == (1, 77, (), True)
    assert "<|eot_id|>" in PAPER_STOP_STRINGS and "\n\nProblem" in PAPER_STOP_STRINGS


def test_the_profile_is_a_checked_setting_and_part_of_the_cell(tmp_path):
    from study.core.cells import expand_grid

    assert EvalSpec().profile == "robust"
    with pytest.raises(SpecError, match=r"evaluation\.profile"):
        parse_spec(small_spec(tmp_path, evaluation={"profile": "lenient"}))
    robust = {c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path)))}
    paper = {c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path, evaluation={"profile": "paper"})))}
    assert robust.isdisjoint(paper)


# ---------------------------------------------------------------- stop strings, beam search

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny"), context_tokens=64)
    return folder, LlamaForCausalLM.from_pretrained(folder).eval(), PreTrainedTokenizerFast.from_pretrained(folder)


def test_an_output_is_cut_before_the_first_stop_string(tiny):
    _, _, tokenizer = tiny
    text = "Tom has 7 apples. The answer is 7.\n\nProblem: Ann has 3"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id, 5, 6]
    kept, count = finish_stopped_output(tokenizer, ids, PAPER_STOP_STRINGS)
    assert kept == "Tom has 7 apples. The answer is 7."
    assert tokenizer.decode(ids[:count]).endswith("Problem") and "\n\nProblem" not in tokenizer.decode(ids[:count - 1])
    assert finish_stopped_output(tokenizer, ids[:5], PAPER_STOP_STRINGS) == (tokenizer.decode(ids[:5]).strip(), 5)


def _prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(f"Question: {q}\nAnswer:", add_special_tokens=False)["input_ids"] for q in QUESTIONS]


def test_batched_beam_search_equals_one_prompt_at_a_time(tiny):
    """Left padding in a batch must not move a beam: each row equals its prompt alone."""
    _, model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    batched = transformers_generate(model, tokenizer, prompts, 12, batch_size=6, beams=5, stop_at_answer=False)
    alone = [transformers_generate(model, tokenizer, [p], 12, batch_size=1, beams=5, stop_at_answer=False)[0]
             for p in prompts]
    strip = {tokenizer.pad_token_id}
    assert [[t for t in row if t not in strip] for row in batched] == [[t for t in row if t not in strip] for row in alone]
    greedy = transformers_generate(model, tokenizer, prompts, 12, batch_size=6, stop_at_answer=False)
    assert batched != greedy, "beam search of width 5 finds other continuations than greedy here"


def test_the_paper_profile_beam_searches_commonsense_and_scores_twice(tiny, monkeypatch):
    _, model, tokenizer = tiny
    # the paper's 640 new tokens, shortened so that the test takes seconds on a CPU
    monkeypatch.setitem(profiles.PAPER_DECODING, "commonsense",
                        replace(profiles.PAPER_DECODING["commonsense"], max_new_tokens=12))
    problems = [Problem(uid=str(i), question=q, answer="B") for i, q in enumerate(QUESTIONS[:3])]
    evaluation = evaluate(model, tokenizer, "csqa", problems, EvalSpec(profile="paper", engine="transformers"))
    prompts = _prompts(tokenizer)[:3]
    expected = transformers_generate(model, tokenizer, prompts, 12, batch_size=64, beams=5, stop_at_answer=False)
    texts = [finish_stopped_output(tokenizer, row, PAPER_STOP_STRINGS)[0] for row in expected]
    predictions = evaluation.predictions
    assert list(predictions["output"]) == texts
    assert list(predictions["correct_paper"]) == [score_paper("csqa", t, "B") for t in texts]
    assert evaluation.accuracy_paper == pytest.approx(predictions["correct_paper"].mean())


def test_an_engine_that_cannot_beam_search_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(vllm_module, "installed_vllm", lambda: "0.6.1.post2")
    monkeypatch.setattr(evaluate_module, "installed_vllm", lambda: "0.6.1.post2")
    with pytest.raises(VllmEngineError, match="vLLM 0.6.1.post2 cannot .* evaluation.engine: transformers"):
        require_beam_search()
    for engine, gpus in (("vllm", 0), ("auto", 1)):
        spec = parse_spec(small_spec(tmp_path, datasets=[{"name": "csqa"}], formats=["answer_only"],
                                     evaluation={"profile": "paper", "engine": engine},
                                     resources={"gpus_per_worker": gpus}))
        with pytest.raises(SpecError, match="evaluation.profile: .* cannot"):
            check_beam_search(spec)
    math_only = parse_spec(small_spec(tmp_path, evaluation={"profile": "paper", "engine": "vllm"}))
    check_beam_search(math_only)  # math tasks decode greedily: no beam search needed
    transformers = parse_spec(small_spec(tmp_path, datasets=[{"name": "csqa"}], formats=["answer_only"],
                                         evaluation={"profile": "paper", "engine": "transformers"}))
    check_beam_search(transformers)
    monkeypatch.setattr(vllm_module, "installed_vllm", lambda: "0.29.0+cpu")
    require_beam_search()


@pytest.mark.vllm
@needs_vllm
def test_vllm_beam_search_equals_transformers_num_beams(tmp_path):
    """Both engines, beam width 5 at temperature 0, give the same outputs on a tiny student trained
    to say set texts (then EOS). (They normalise a beam's log-probability by different lengths, so a
    random model, whose short beams end early, can rank its finished beams differently.)"""
    model, tokenizer = _train_forced_student(tmp_path / "forced")
    prompts = [tokenizer(question_prompt("svamp", p.question), add_special_tokens=False)["input_ids"]
               for p, _ in FORCED]
    ours = transformers_generate(model, tokenizer, prompts, 48, batch_size=3, beams=5, stop_at_answer=False)
    theirs = vllm_module.vllm_generate(model, tokenizer, prompts, 48, beams=5)
    texts = [[finish_stopped_output(tokenizer, row, PAPER_STOP_STRINGS) for row in rows] for rows in (ours, theirs)]
    assert texts[0] == texts[1]
    assert [text for text, _ in texts[0]] == [reply.strip() for _, reply in FORCED]


# ---------------------------------------------------------------- both accuracies in the result

def test_the_result_schema_holds_both_accuracies():
    assert column_dtypes()["accuracy_paper"] == "float64" and column_dtypes()["eval_profile"] == "string"
    assert Measurements.model_fields["accuracy_paper"].default is None  # results written before it existed
    assert CellResult.model_fields["eval_profile"].default == "robust"


# ---------------------------------------------------------------- stop strings stop generation, beams ranked as vLLM

def test_a_stop_string_stops_greedy_rows_and_single_beams(tiny):
    """The random model's text holds " is" early for one prompt: its row, and its beams, end at the
    token that completes it instead of running to the budget (stop strings end decoding, they are
    not only cut afterwards)."""
    _, model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    free = transformers_generate(model, tokenizer, prompts, 24, batch_size=6, stop_at_answer=False)
    stopped = transformers_generate(model, tokenizer, prompts, 24, batch_size=6, stop_at_answer=False,
                                    stop_strings=(" is",))
    ends = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    for row, full in zip(stopped, free):
        kept = [t for t in row if t not in ends]
        _, count = finish_stopped_output(tokenizer, full, (" is",))
        assert kept == full[:count], "a greedy row ends at the token that completes the stop string"
    assert any(len([t for t in row if t not in ends]) < 24 for row in stopped)
    beams = transformers_generate(model, tokenizer, prompts, 24, batch_size=6, beams=5, stop_at_answer=False,
                                  stop_strings=(" is",))
    assert any(len(row) < 24 and tokenizer.decode(row).endswith(" is") for row in beams)


def test_finished_beams_are_ranked_by_vllms_score(tiny):
    """transformers returns its `beams` finished hypotheses; the one kept is the best by vLLM's
    score (log-probability over prompt + new tokens), here checked by scoring each hypothesis alone,
    without padding; on this random model that is not always transformers' own first."""
    _, model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    kept = transformers_generate(model, tokenizer, prompts, 24, batch_size=6, beams=5, stop_at_answer=False,
                                 stop_strings=(" is",))
    differs = 0
    for prompt, row in zip(prompts, kept):
        encoded = {"input_ids": torch.tensor([prompt]), "attention_mask": torch.ones(1, len(prompt), dtype=torch.long)}
        out = model.generate(**encoded, max_new_tokens=24, do_sample=False, num_beams=5, num_return_sequences=5,
                             early_stopping="never", return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([StopStringStop(tokenizer, len(prompt), (" is",))]))
        counts = (out.beam_indices >= 0).sum(-1).tolist()
        hypotheses = [out.sequences[h, len(prompt):len(prompt) + counts[h]].tolist() for h in range(5)]
        scores = [_alone_logprob(model, prompt, h) / (len(prompt) + len(h) - (h[-1] == tokenizer.eos_token_id))
                  for h in hypotheses]
        assert row == hypotheses[scores.index(max(scores))]
        differs += row != hypotheses[0]
    assert differs > 0, "vLLM's ranking picks another hypothesis than transformers' own for some prompt"


def _alone_logprob(model, prompt: list[int], new: list[int]) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + new])).logits[0, len(prompt) - 1:-1]
    return float(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(new)[:, None]).sum())
