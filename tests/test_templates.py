"""Student templates: `plain` is the project's old prompt to the token; the others wrap the
question as the paper's evaluator did, in training and evaluation alike; a template the student's
tokenizer cannot render is one clear error before training."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import small_spec
from test_teacher_serving import save_tiny_llama

from study.core.cells import expand_grid
from study.core.datasets import Problem, problem_text, question_prompt
from study.core.spec import EvalSpec, SpecError, StudySpec, parse_spec
from study.core.templates import TEMPLATES, template_prompt
from trainables import evaluate as evaluate_module
from trainables.data import IGNORE_INDEX, encode_corpus, encode_example
from trainables.students import StudentError, check_students, tiny_templates
from trainables.templates import prompt_ids, rationale_ids, template_problem
from trainables.tokenizer import train_tokenizer

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
             "Ann has 12 pens and gives 5 away. How many pens are left?"]
RATIONALES = ["3 + 4 = 7. The answer is 7.", "12 - 5 = 7. The answer is 7."]
LLAMA3_MARKERS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"Question: {q}\nAnswer: {r}" for q, r in zip(QUESTIONS, RATIONALES)] * 10
    return train_tokenizer(texts, 300)


@pytest.fixture(scope="module")
def llama3_tokenizer():
    """A study tokenizer given LLaMA-3's BOS and turn markers as special tokens."""
    tokenizer = train_tokenizer([f"{q} {r}" for q, r in zip(QUESTIONS, RATIONALES)] * 10, 300)
    tokenizer.add_special_tokens({"bos_token": LLAMA3_MARKERS[0], "additional_special_tokens": LLAMA3_MARKERS[1:]})
    return tokenizer


def _corpus() -> pd.DataFrame:
    return pd.DataFrame({"question": QUESTIONS, "rationale": RATIONALES})


def test_plain_is_the_old_prompt_and_target_to_the_token(tokenizer):
    for question, rationale in zip(QUESTIONS, RATIONALES):
        old = encode_example(tokenizer, question_prompt("svamp", question), rationale)
        assert prompt_ids(tokenizer, "plain", "svamp", question) + rationale_ids(tokenizer, "plain", rationale) \
            == old.input_ids
    assert encode_corpus(tokenizer, "svamp", _corpus(), 256) == encode_corpus(tokenizer, "svamp", _corpus(), 256,
                                                                               template="plain")


def test_llama3_has_bos_the_system_turn_and_the_assistant_header(llama3_tokenizer):
    ids = prompt_ids(llama3_tokenizer, "llama3", "svamp", QUESTIONS[0])
    assert ids[0] == llama3_tokenizer.bos_token_id
    text = llama3_tokenizer.decode(ids)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant."
                           "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" + QUESTIONS[0])
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    eot = llama3_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert ids.count(eot) == 2, "each turn marker is one token"
    assert template_problem(llama3_tokenizer, "llama3") is None


def test_alpaca_wraps_the_question_as_the_paper_did():
    prompt = template_prompt("alpaca", "svamp", QUESTIONS[0])
    assert prompt == ("Below is an instruction that describes a task. Write a response that appropriately completes "
                      f"the request.\n\n### Instruction:\n{QUESTIONS[0]}\n\n### Response:")
    assert "Question:" not in template_prompt("gemma", "svamp", QUESTIONS[0])


def test_training_masks_exactly_the_templated_prompt(llama3_tokenizer):
    examples = encode_corpus(llama3_tokenizer, "svamp", _corpus(), 256, template="llama3").examples
    for example, question in zip(examples, QUESTIONS):
        prompt = prompt_ids(llama3_tokenizer, "llama3", "svamp", question)
        masked = [token for token, label in zip(example.input_ids, example.labels) if label == IGNORE_INDEX]
        assert masked == prompt and example.input_ids[:len(prompt)] == prompt
        assert example.input_ids[-1] == llama3_tokenizer.eos_token_id


def test_evaluation_asks_in_the_same_template(tokenizer, monkeypatch):
    asked: list[list[int]] = []

    def fake_generate(model, tok, ids, *settings):
        asked.extend(ids)
        return [[tok.eos_token_id] for _ in ids]

    monkeypatch.setattr(evaluate_module, "transformers_generate", fake_generate)

    class Model:
        device = __import__("torch").device("cpu")

        def eval(self):
            return self

    problems = [Problem(uid=str(i), question=q, answer="7") for i, q in enumerate(QUESTIONS)]
    evaluate_module.evaluate(Model(), tokenizer, "svamp", problems, EvalSpec(engine="transformers"), "alpaca")
    assert asked == [prompt_ids(tokenizer, "alpaca", "svamp", problem_text(p)) for p in problems]
    assert encode_corpus(tokenizer, "svamp", _corpus(), 256, template="alpaca").examples[0].input_ids[:len(asked[0])] \
        == asked[0]


def test_a_chat_template_comes_from_the_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_tiny_llama(tmp_path))
    assert tokenizer.decode(prompt_ids(tokenizer, "chat", "svamp", QUESTIONS[0])) == f"<user>{QUESTIONS[0]}\n<assistant>"


def _spec(tmp_path, students: list[dict]) -> StudySpec:
    return StudySpec.model_validate(small_spec(tmp_path / "out", students=students))


def test_a_template_the_study_tokenizer_cannot_render_is_refused(tmp_path):
    spec = _spec(tmp_path, [{"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2}, "template": "chat"}])
    with pytest.raises(StudentError, match="student 'small': template 'chat' cannot be rendered: .*no chat template"):
        check_students(spec)


@pytest.mark.parametrize("template, markers", [("llama3", LLAMA3_MARKERS[1:]), ("gemma", ["<start_of_turn>", "<end_of_turn>"])])
def test_a_tiny_student_in_a_turn_template_reads_its_markers_as_single_tokens_after_bos(tmp_path, template, markers):
    texts = [f"Question: {q}\nAnswer: {r}" for q, r in zip(QUESTIONS, RATIONALES)] * 10
    study_tokenizer = train_tokenizer(texts, 300, templates=["plain", template])
    assert template_problem(study_tokenizer, template) is None
    example = encode_corpus(study_tokenizer, "svamp", _corpus(), 256, template=template).examples[0]
    assert example.input_ids[0] == study_tokenizer.bos_token_id
    marker_ids = study_tokenizer.convert_tokens_to_ids(markers)
    assert all(example.input_ids.count(i) >= 1 for i in marker_ids)
    assert len(example.input_ids) == len(study_tokenizer(study_tokenizer.decode(example.input_ids),
                                                         add_special_tokens=False)["input_ids"])
    spec = _spec(tmp_path, [{"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2}, "template": template}])
    check_students(spec)  # the pre-flight tokenizer holds the same special tokens
    assert tiny_templates(spec) == [template]


def test_plain_students_keep_the_tokenizer_they_always_had():
    texts = [f"Question: {q}\nAnswer: {r}" for q, r in zip(QUESTIONS, RATIONALES)] * 10
    always = train_tokenizer(texts, 300)
    assert train_tokenizer(texts, 300, templates=["plain", "alpaca"]).backend_tokenizer.to_str() \
        == always.backend_tokenizer.to_str()
    with_llama3 = train_tokenizer(texts, 300, templates=["llama3", "plain"])
    assert len(with_llama3) == len(always) + 4  # three markers and BOS, after every trained token
    assert all(with_llama3.get_vocab()[token] == i for token, i in always.get_vocab().items())
    assert with_llama3(texts[0])["input_ids"] == always(texts[0])["input_ids"]


def test_a_study_tokenizer_without_the_templates_tokens_is_refused_at_the_cell():
    from study.core.spec import StudentSpec
    from trainables.students import student_tokenizer

    student = StudentSpec.model_validate({"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2},
                                          "template": "llama3"})
    with pytest.raises(StudentError, match="template 'llama3' cannot be rendered by the study tokenizer"):
        student_tokenizer(student, train_tokenizer(["Question: Answer:"], 300))


def test_a_hub_students_own_tokenizer_decides(tmp_path):
    folder = str(save_tiny_llama(tmp_path / "model"))
    check_students(_spec(tmp_path, [{"name": "hf", "hf_id": folder, "template": "chat"},
                                    {"name": "hf-alpaca", "hf_id": folder, "template": "alpaca"}]))
    with pytest.raises(StudentError, match="student 'hf': template 'llama3' cannot be rendered: its tokenizer has no BOS"):
        check_students(_spec(tmp_path, [{"name": "hf", "hf_id": folder, "template": "llama3"}]))


def test_markers_split_into_pieces_are_refused(tokenizer):
    tokenizer = train_tokenizer(["a b c"], 300)
    tokenizer.add_special_tokens({"bos_token": "<bos>"})
    assert "does not hold ['<start_of_turn>', '<end_of_turn>'] as single tokens" in template_problem(tokenizer, "gemma")


def test_the_template_is_checked_by_the_spec_and_is_part_of_the_cell(tmp_path):
    student = {"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2}}
    with pytest.raises(SpecError, match=r"students\[0\]\.template"):
        parse_spec(small_spec(tmp_path, students=[{**student, "template": "vicuna"}]))
    plain = [c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path, students=[student])))]
    alpaca = [c.cell_id for c in expand_grid(parse_spec(small_spec(tmp_path, students=[{**student, "template": "alpaca"}])))]
    assert set(plain).isdisjoint(alpaca)
    assert set(TEMPLATES) == {"plain", "llama3", "gemma", "alpaca", "chat"}
