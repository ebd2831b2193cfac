"""Layout options change how the student trains, not what it computes: activation checkpointing
and torch.compile of each decoder layer give the plain model's loss and gradients."""

from __future__ import annotations

import pytest
import torch
from transformers import BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM

from trainables.data import IGNORE_INDEX
from trainables.parallel import decoder_layers, prepare_layers
from trainables.step import TargetLoss

CONFIG = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2)


def _loss_and_gradients(activation_checkpointing: bool, compile_layers: bool) -> tuple[float, list[torch.Tensor]]:
    torch.manual_seed(0)
    student = LlamaForCausalLM(CONFIG)
    student.train()
    prepare_layers(student, activation_checkpointing, compile_layers)
    inputs = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    targets = inputs.clone()
    targets[:, :4] = IGNORE_INDEX
    loss = TargetLoss(student)({"input_ids": inputs, "target_ids": targets})
    loss.backward()
    return loss.item(), [p.grad for p in student.parameters()]


@pytest.mark.parametrize("checkpointing, compiled", [(True, False), (True, True)], ids=["checkpointing", "compiled"])
def test_layer_options_keep_the_loss_and_gradients(checkpointing, compiled):
    plain_loss, plain_grads = _loss_and_gradients(False, False)
    loss, grads = _loss_and_gradients(checkpointing, compiled)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for got, expected in zip(grads, plain_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_decoder_layers_are_found_by_the_models_own_no_split_classes():
    assert [type(m).__name__ for m in decoder_layers(LlamaForCausalLM(CONFIG))] == ["LlamaDecoderLayer"] * 2
    bloom = BloomForCausalLM(BloomConfig(vocab_size=100, hidden_size=32, n_layer=3, n_head=2))
    assert [type(m).__name__ for m in decoder_layers(bloom)] == ["BloomBlock"] * 3
