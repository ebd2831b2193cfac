"""One optimizer step: the loss is a sum over target tokens divided by the target tokens of the
whole step (every micro-batch, every Ray Train worker), so neither packing nor the split into
micro-batches or workers reweights any sample: each target token counts the same.

No Ray here: the Train loop (trainables/train.py) and bench/train_throughput.py both call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from trainables.data import IGNORE_INDEX, TEACHER_KEYS
from trainables.parallel import gradient_sync


def global_sum(value: float, world: int, device: torch.device | str = "cpu") -> float:
    """Sum of a number over all ranks (each rank trains on its own batches)."""
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return float(total.item())


def global_max(value: int, world: int, device: torch.device | str = "cpu") -> int:
    """The largest of a number over all ranks."""
    if world == 1:
        return value
    largest = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(largest, op=torch.distributed.ReduceOp.MAX)
    return int(largest.item())


def target_count(batch: dict) -> int:
    return int((batch["target_ids"] != IGNORE_INDEX).sum())


class TargetLoss(torch.nn.Module):
    """A causal LM's summed next-token cross-entropy over a batch's targets (already shifted).

    The LM head runs only where a target exists: prompt tokens and row padding never reach it,
    which gives the same loss and gradients for less work. Packed batches carry position_ids and
    no attention mask, so transformers keeps attention inside each document
    (trainables/packing.py). This module, not the bare model, is what DDP wraps and FSDP2 shards as its root."""

    def __init__(self, student: PreTrainedModel) -> None:
        super().__init__()
        self.student = student

    def forward(self, batch: dict) -> torch.Tensor:
        logits = target_logits(self.student, batch)
        return F.cross_entropy(logits.float(), batch["target_ids"][batch["target_ids"] != IGNORE_INDEX], reduction="sum")


def target_logits(model: PreTrainedModel, batch: dict) -> torch.Tensor:
    """The model's next-token logits at the batch's target tokens only, (targets, vocab), in the
    order of `target_ids != IGNORE_INDEX` (row-major)."""
    inputs = {name: value for name, value in batch.items() if name != "target_ids" and name not in TEACHER_KEYS}
    hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state
    return model.get_output_embeddings()(hidden[batch["target_ids"] != IGNORE_INDEX])


class TargetLogits(torch.nn.Module):
    """`target_logits` of a model as a module's forward: the root unit FSDP2 shards around a frozen
    model (trainables/parallel.py), so one forward gathers all that target_logits uses."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return target_logits(self.model, batch)


def to_device(batch: dict, device: torch.device | str) -> dict:
    return {name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for name, value in batch.items()}


def train_step(loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, micro_batches: list[dict],
               world: int, device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
               max_grad_norm: float = 1.0) -> float:
    """Forward and backward every micro-batch, then one optimizer step; returns the step's mean
    loss per target token (over all workers).

    Each worker's backward sees loss_sum * world / step_targets: DDP and FSDP2 average gradients
    over the world, which turns that into the sum over all workers' tokens / all of the step's targets.
    Every worker makes as many passes as the worker with the most micro-batches (FSDP2 gathers
    weights in every forward, so the workers' passes must pair up): one with fewer repeats its
    smallest micro-batch at weight 0, which adds nothing to the loss or the gradients."""
    device_type = torch.device(device).type
    step_targets = global_sum(sum(target_count(b) for b in micro_batches), world, device)
    passes = global_max(len(micro_batches), world, device)
    smallest = min(micro_batches, key=lambda b: b["input_ids"].numel())
    loss_total = torch.zeros((), device=device)
    for number in range(passes):
        real = number < len(micro_batches)
        batch = micro_batches[number] if real else smallest
        with gradient_sync(loss_module, sync=number == passes - 1):
            with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                loss_sum = loss_module(to_device(batch, device))
            (loss_sum * (world / step_targets if real else 0.0)).backward()
        if real:
            loss_total += loss_sum.detach()
    torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return global_sum(float(loss_total), world, device) / step_targets
