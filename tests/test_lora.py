"""LoRA fine-tuning through the trainer's own loss and step: only adapters train, the merged model
evaluates exactly like the adapted one, a target the student lacks is one clear error."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from transformers import LlamaForCausalLM, get_scheduler

from study.core.datasets import load_split, question_prompt
from study.core.spec import DatasetSpec, LoraSettings, StudentSpec, TinyArch
from study.core.program_render import render
from trainables.data import encode_corpus
from trainables.lora import merged, with_lora
from trainables.packing import collate_packed
from trainables.step import TargetLoss, train_step
from trainables.students import StudentError, build_student, parameter_count
from trainables.tokenizer import train_tokenizer

PROBLEMS = load_split(DatasetSpec(name="arith"), "train")[:16]
STUDENT = StudentSpec(name="tiny", tiny=TinyArch(layers=2, width=64, heads=2))
LORA = LoraSettings(rank=8, alpha=16.0, dropout=0.05, targets=["q_proj", "v_proj", "down_proj"])
STEPS = 8


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([question_prompt("arith", p.question) + render(p, 3, "cot") for p in PROBLEMS], 400)


@pytest.fixture(scope="module")
def batch(tokenizer) -> dict:
    corpus = pd.DataFrame({"question": [p.question for p in PROBLEMS], "rationale": [render(p, 3, "cot") for p in PROBLEMS]})
    examples = encode_corpus(tokenizer, "arith", corpus, max_length=256).examples
    return collate_packed(examples, 256, tokenizer.pad_token_id)


def _adapted(tokenizer):
    return with_lora(build_student(STUDENT, tokenizer, 256, seed=0), LORA, STUDENT.name)


@pytest.fixture(scope="module")
def trained(tokenizer, batch):
    """The adapted student after STEPS optimizer steps, its weights before, and the losses."""
    student = _adapted(tokenizer)
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=3e-2)
    scheduler = get_scheduler("constant", optimizer)
    loss_module = TargetLoss(student)
    student.train()
    losses = [train_step(loss_module, optimizer, scheduler, [batch], world=1) for _ in range(STEPS)]
    return student.eval(), before, losses


def test_lora_trains_only_the_adapters(trained):
    student, before, losses = trained
    trainable = {name for name, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable} == {"q_proj", "v_proj", "down_proj"}
    for name, weight in student.named_parameters():
        if name in trainable:
            assert not torch.equal(weight, before[name]), f"adapter {name} did not change"
        else:
            assert torch.equal(weight, before[name]), f"base weight {name} changed"
    # the frozen random base caps how far the loss can go (its norm and tied head stay small): a clear fall
    assert losses[-1] < losses[0] - 0.15 and losses == sorted(losses, reverse=True), losses


def _greedy(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    """Greedy new tokens per prompt, as evaluation generates them (KV cache, stop at EOS)."""
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            generated = model.generate(input_ids=input_ids, max_new_tokens=24, do_sample=False,
                                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            outputs.append(generated[0, input_ids.shape[1]:].tolist())
    return outputs


def test_the_merged_model_evaluates_like_the_adapted_one(trained, tokenizer, batch):
    adapted = copy.deepcopy(trained[0])  # merging uses the PeftModel up; the fixture's stays adapted
    inputs = {"input_ids": batch["input_ids"][:4]}
    prompts = [question_prompt("arith", p.question) for p in PROBLEMS[:4]]
    with torch.no_grad():
        adapted_logits = adapted(**inputs).logits
        base_logits = build_student(STUDENT, tokenizer, 256, seed=0).eval()(**inputs).logits
    adapted_replies = _greedy(adapted, tokenizer, prompts)

    plain = merged(adapted)
    assert type(plain) is LlamaForCausalLM and not any("lora_" in name for name, _ in plain.named_parameters())
    assert parameter_count(plain) == parameter_count(build_student(STUDENT, tokenizer, 256, seed=0))
    with torch.no_grad():
        merged_logits = plain(**inputs).logits
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-5, rtol=0)
    assert (merged_logits - base_logits).abs().max() > 1e-2, "the adapters must matter for this test"
    assert _greedy(plain, tokenizer, prompts) == adapted_replies
    assert any(len(reply) > 4 for reply in adapted_replies)


def test_a_full_model_is_evaluated_as_it_is(tokenizer):
    student = build_student(STUDENT, tokenizer, 256, seed=0)
    assert merged(student) is student


def test_all_linear_adapts_every_projection_but_not_the_head(tokenizer):
    student = with_lora(build_student(STUDENT, tokenizer, 256, seed=0), LoraSettings(), STUDENT.name)
    adapted = {name.split(".lora_A.")[0].rsplit(".", 1)[-1] for name, _ in student.named_parameters() if ".lora_A." in name}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize(("targets", "expected"), [
    (["q_proj", "qkv_proj"], "LoRA target 'qkv_proj' matches no layer"),
    (["mlp"], "LoRA target 'mlp' matches no layer"),  # a block, not a layer
], ids=["misspelled", "a-block"])
def test_a_target_the_student_lacks_is_one_clear_error(tokenizer, targets, expected):
    with pytest.raises(StudentError) as raised:
        with_lora(build_student(STUDENT, tokenizer, 256, seed=0), LoraSettings(targets=targets), STUDENT.name)
    message = str(raised.value)
    assert message.startswith("student 'tiny': ") and expected in message, message
    assert "'q_proj'" in message and "'down_proj'" in message, "the error lists the layers that exist"
