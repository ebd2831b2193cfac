"""Training FLOPs and MFU accounting."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trainables.accounting import flop_count, peak_flops


def test_flops_count_every_matmul_parameter_per_token_and_attention_per_document():
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 256  # q, o; k, v (2 kv heads of 16); gate, up, down
    count = flop_count(model)
    assert (count.body_flops, count.head_flops) == (6 * 2 * per_layer, 6 * 100 * 64)
    flops = count([10, 30], targets=25)
    assert flops == 6 * (2 * per_layer) * 40 + 6 * 100 * 64 * 25 + 6 * 2 * 64 * (10**2 + 30**2)


def test_frozen_weights_cost_no_weight_gradient():
    """LoRA: the frozen base and head cost 4 FLOPs per parameter and token, the adapters 6."""
    from study.core.spec import LoraSettings
    from trainables.lora import with_lora

    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    adapted = with_lora(LlamaForCausalLM(config), LoraSettings(rank=8, targets=["q_proj"]), "s")
    count = flop_count(adapted)
    base = 2 * (4 * 64 * 64 + 3 * 64 * 256)
    adapters = 2 * (8 * 64 + 64 * 8)
    assert (count.body_flops, count.head_flops) == (4 * base + 6 * adapters, 4 * 100 * 64)


def test_no_mfu_without_a_known_gpu():
    assert peak_flops(torch.device("cpu")) is None
