"""The `hf` teacher: a tiny random LLaMA on a real Ray Serve, called over HTTP with the one client."""

from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from study.core.spec import HfTeacher
from study.teachers.client import ChatClient, ChatRequest, TeacherError
from study.teachers.hf_serve import deploy_hf_teacher
from study.teachers.endpoint import start_serve, stop_teacher
from trainables.tokenizer import train_tokenizer

pytestmark = pytest.mark.ray

# A role-tagged template, so the served prompt differs from the plain join and is checkable.
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
QUESTIONS = [f"Tom has {a} apples and buys {b} more. How many apples does he have?"
             for a, b in [(3, 4), (12, 7), (25, 16), (8, 30), (41, 2), (9, 9)]]


def save_tiny_llama(folder: Path, context_tokens: int = 256) -> Path:
    """A 2-layer, width-64 LLaMA with random weights and a BPE tokenizer trained on the spot,
    saved as a model folder any loader (transformers, vLLM) reads. Large initial weights make
    the logits far apart, so greedy replies do not hinge on float rounding."""
    texts = [f"<system>You are a careful teacher.\n<user>{q}\n<assistant>The answer is {i}." for i, q in
             enumerate(QUESTIONS)] * 20
    tokenizer = train_tokenizer(texts, vocab_size=400)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=context_tokens,
                         initializer_range=0.5, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a careful teacher."}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-teacher"))


@pytest.fixture(scope="module")
def endpoint(ray_local, model_folder):
    port = start_serve()
    teacher = HfTeacher(kind="hf", name="tiny", model=str(model_folder), batch_size=4)
    endpoint = deploy_hf_teacher(teacher, port)
    yield endpoint
    stop_teacher(endpoint)


def test_endpoint_answers_to_the_teacher_name(endpoint):
    assert endpoint.model == "tiny" and endpoint.app_name == "shared-teacher-tiny"
    assert endpoint.base_url.endswith("/shared/teachers/tiny/v1")
    models = httpx.get(f"{endpoint.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]


def test_batched_greedy_replies_match_plain_generate(endpoint, model_folder):
    requests = [ChatRequest(model="tiny", messages=chat(q), max_tokens=6 + i) for i, q in enumerate(QUESTIONS)]
    replies = ChatClient(base_url=endpoint.base_url, max_concurrency=8).complete_all(requests)

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = LlamaForCausalLM.from_pretrained(model_folder).eval()
    assert len(replies) == len(requests)
    for request, reply in zip(requests, replies):
        prompt = tokenizer(tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**prompt, max_new_tokens=request.max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[0, prompt["input_ids"].shape[1]:]
        assert reply.prompt_tokens == prompt["input_ids"].shape[1]
        assert 0 < reply.completion_tokens <= request.max_tokens
        assert reply.completion_tokens == len(new_tokens)
        assert reply.text == tokenizer.decode(new_tokens, skip_special_tokens=True)


def test_sampling_with_a_seed_repeats_and_max_tokens_is_honoured(endpoint):
    body = {"model": "tiny", "messages": chat(QUESTIONS[0]), "max_tokens": 5, "temperature": 1.0, "top_p": 0.9,
            "seed": 7}
    first, second = (httpx.post(f"{endpoint.base_url}/chat/completions", json=body, timeout=30).json()
                     for _ in range(2))
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    assert first["usage"]["completion_tokens"] <= 5
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]


def test_unknown_model_is_a_404_in_the_openai_error_shape(endpoint):
    response = httpx.post(f"{endpoint.base_url}/chat/completions", json={"model": "gpt-9", "messages": chat("Hi")},
                          timeout=30)
    assert response.status_code == 404
    error = response.json()["error"]
    assert "gpt-9" in error["message"] and error["type"] == "invalid_request_error"
    client = ChatClient(base_url=endpoint.base_url, max_retries=3, backoff_s=5.0)
    with pytest.raises(TeacherError, match="HTTP 404"):
        client.complete_all([ChatRequest(model="gpt-9", messages=chat("Hi"))])  # final: no backoff waits


def test_a_prompt_past_the_context_is_a_400(endpoint):
    response = httpx.post(f"{endpoint.base_url}/chat/completions", timeout=30,
                          json={"model": "tiny", "messages": chat("apples " * 300), "max_tokens": 4})
    assert response.status_code == 400
    assert "exceeds the model's context" in response.json()["error"]["message"]
