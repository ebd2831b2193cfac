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


def _lora_losses(rank: int, world: int, port: int, results) -> None:
    """Five steps of LoRA on a tiny LLaMA, each step's 8 examples split over `world` processes
    sharded by FSDP2 (one process: no sharding); returns the losses and the adapter tensors saved."""
    import os

    from study.core.spec import LoraSettings
    from trainables import checkpoints
    from trainables.data import Example
    from trainables.lora import with_lora
    from trainables.packing import collate_padded
    from trainables.parallel import distribute
    from trainables.step import train_step

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    student = with_lora(LlamaForCausalLM(CONFIG), LoraSettings(rank=4, dropout=0.0), "s")
    loss_module = TargetLoss(student)
    wrapped = distribute(loss_module, student, world, "fsdp", torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in loss_module.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(5):
        documents = [torch.randint(0, 100, (int(torch.randint(8, 20, (1,), generator=generator)),), generator=generator)
                     for _ in range(8)]
        examples = [Example(d.tolist(), [IGNORE_INDEX] * 3 + d[3:].tolist()) for d in documents]
        share = examples[rank * 8 // world:(rank + 1) * 8 // world]
        losses.append(train_step(wrapped, optimizer, scheduler, [collate_padded(share, 0)], world))
    state = checkpoints.gather(loss_module, optimizer, scheduler, checkpoints.Counters(step=5))
    if rank == 0:
        results.put((losses, {name: tensor.numpy() for name, tensor in state.model.items()}))  # by value
    if world > 1:
        torch.distributed.destroy_process_group()


def test_lora_under_fsdp2_on_two_processes_matches_one_process():
    import queue
    import socket

    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.Queue()
    _lora_losses(0, 1, 0, results_local := queue.Queue())
    one_losses, one_adapters = results_local.get()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(_lora_losses, args=(2, port, results), nprocs=2, start_method="spawn")
    two_losses, two_adapters = results.get(timeout=60)
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    assert sorted(two_adapters) == sorted(one_adapters) and all("lora_" in name for name in one_adapters)
    for name, tensor in one_adapters.items():  # gathered from the shards: the same trained adapters
        torch.testing.assert_close(torch.from_numpy(two_adapters[name]), torch.from_numpy(tensor), rtol=1e-3, atol=1e-4)
