"""The method seam: every method of the spec has a training method, and SFT's pieces are the
ones the trainer used before the seam (same examples, same loss, same parameter names)."""

from types import UnionType
from typing import Union, get_args, get_origin

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from study.core.cells import CorpusKey
from study.core.datasets import load_split
from study.core.spec import DatasetSpec, MethodSpec, ProgramTeacher, SftMethod, TrainSettings
from study.teachers.program import render
from trainables.data import encode_corpus
from trainables.methods import METHODS, training_method
from trainables.packing import collate_padded
from trainables.step import TargetLoss
from trainables.tokenizer import train_tokenizer


def _members(union: object) -> set[type]:
    inner = get_args(union)[0]  # Annotated[members, discriminator]
    return set(get_args(inner)) if get_origin(inner) in (Union, UnionType) else {inner}


def test_every_method_of_the_spec_is_registered():
    assert set(METHODS) == _members(MethodSpec)


def test_sft_trains_one_student_on_the_encoded_corpus_with_the_target_loss():
    problems = load_split(DatasetSpec(name="arith"), "train")[:8]
    rows = pd.DataFrame({"question": [p.question for p in problems], "rationale": [render(p, 3, "cot") for p in problems]})
    tokenizer = train_tokenizer([q + r for q, r in zip(rows["question"], rows["rationale"])], vocab_size=300)
    sft = training_method(SftMethod())
    (role,) = sft.roles
    settings = TrainSettings(max_length=256)
    corpus = CorpusKey(dataset=DatasetSpec(name="arith"), teacher=ProgramTeacher(kind="program", name="program"),
                       granularity=3, format="cot")
    assert role == "student"
    assert sft.examples(role, tokenizer, corpus, rows, settings) == encode_corpus(tokenizer, "arith", rows, 256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    loss_module = sft.loss_module(role, model)
    assert isinstance(loss_module, TargetLoss)  # summed over target tokens: train_step divides per step
    assert [name for name, _ in loss_module.named_parameters()] == [f"student.{n}" for n, _ in model.named_parameters()]
    batch = collate_padded(sft.examples(role, tokenizer, corpus, rows, settings).examples, tokenizer.pad_token_id)
    assert loss_module(batch).item() == TargetLoss(model)(batch).item()
