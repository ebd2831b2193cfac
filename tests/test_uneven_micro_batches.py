"""Workers whose shares of a step make different numbers of micro-batches still pair their FSDP2
passes (trainables/step.py: the one with fewer repeats its smallest at weight 0): two processes
give the single process's losses instead of hanging in an all-gather."""

from __future__ import annotations

import os
import queue
import random

import pytest
import torch
from processes import rank_zero_result
from transformers import LlamaConfig, LlamaForCausalLM

from trainables.data import IGNORE_INDEX, Example
from trainables.packing import PackingPlan, step_micro_batches

PLAN, MICRO_BATCH_TOKENS = PackingPlan(packing=True), 64


def _steps() -> list[list[Example]]:
    """Four steps of 8 examples: the first two long (rank 0's share of two), the rest short."""
    rng = random.Random(0)
    steps = []
    for _ in range(4):
        lengths = [rng.randint(40, 60) for _ in range(2)] + [rng.randint(5, 30) for _ in range(6)]
        ids = [[rng.randrange(1, 96) for _ in range(n)] for n in lengths]
        steps.append([Example(row, [IGNORE_INDEX] * (len(row) // 3) + row[len(row) // 3:]) for row in ids])
    return steps


def _shares(examples: list[Example], world: int) -> list[list[Example]]:
    return [examples] if world == 1 else [examples[:2], examples[2:]]


def _losses(rank: int, world: int, port: int, results) -> None:
    from trainables.parallel import distribute
    from trainables.step import TargetLoss, train_step

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    student = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    loss_module = TargetLoss(student)
    wrapped = distribute(loss_module, student, world, "fsdp", torch.device("cpu"))
    optimizer = torch.optim.AdamW(loss_module.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = [train_step(wrapped, optimizer, scheduler,
                         step_micro_batches(_shares(examples, world)[rank], PLAN, 0, MICRO_BATCH_TOKENS), world)
              for examples in _steps()]
    if rank == 0:
        results.put(losses)
    if world > 1:
        torch.distributed.destroy_process_group()


def test_two_fsdp2_ranks_with_unequal_micro_batch_counts_give_the_losses_of_one():
    counts = {tuple(len(step_micro_batches(share, PLAN, 0, MICRO_BATCH_TOKENS)) for share in _shares(step, 2))
              for step in _steps()}
    assert all(first < second for first, second in counts), counts  # rank 0 has fewer micro-batches every step
    _losses(0, 1, 0, local := queue.Queue())
    assert rank_zero_result(_losses, world=2) == pytest.approx(local.get(), rel=1e-5)
