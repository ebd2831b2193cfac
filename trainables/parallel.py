"""How a student is laid out for training: activation checkpointing, torch.compile of each decoder
layer, and the spread over Ray Train workers (FSDP2 or DDP).

FSDP2 (`fully_shard`) shards each decoder layer, then the root: the `TargetLoss` module around the
student, so the embeddings, final norm and LM head (tied or not) form the root unit that its own
forward gathers. On a GPU, parameters are gathered in bf16 and gradients reduced in fp32, while the
optimizer keeps fp32 master weights (the sharded parameters). Both FSDP2 and DDP average gradients
over workers, which `trainables.step.train_step` accounts for. Gloo (CPU) supports both.

A loss module may run frozen models beside its student (kd's online teacher), named by its
`frozen_models` attribute (`TargetLogits` modules, each around its model). Under FSDP2 they are
sharded the same way, layer by layer, so a worker holds 1/N of a large teacher; their forwards run
in lockstep on every worker as the student's do. Under DDP they stay whole on each worker (DDP
replicates the student too).

No Ray here: the layout takes the world size; the caller decides it.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel

Sharding = Literal["fsdp", "ddp"]


def decoder_layers(student: PreTrainedModel) -> list[torch.nn.Module]:
    """The student's repeated blocks: modules whose class the model names as not to be split
    (`_no_split_modules`, the unit accelerate and TRL wrap for FSDP), e.g. LlamaDecoderLayer."""
    model = student.get_base_model() if hasattr(student, "get_base_model") else student
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layer class (_no_split_modules); cannot shard it")
    return layers


def prepare_layers(student: PreTrainedModel, activation_checkpointing: bool, compile_layers: bool) -> None:
    """In place, before sharding: recompute activations in backward, and compile each layer (one
    small graph shared by all layers compiles fast; dynamic shapes as packed rows vary)."""
    if activation_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile_layers:
        for layer in decoder_layers(student):
            layer.compile(dynamic=True)


def distribute(loss_module: torch.nn.Module, student: PreTrainedModel, world: int, sharding: Sharding,
               device: torch.device) -> torch.nn.Module:
    """The module to train on `world` workers: the loss module itself (one worker), sharded in
    place by FSDP2, or wrapped by DDP. Build the optimizer after this (FSDP2 swaps parameters)."""
    if world == 1:
        return loss_module
    if sharding == "ddp":
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(loss_module.to(device), device_ids=device_ids)
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if device.type == "cuda" else MixedPrecisionPolicy())
    for frozen in getattr(loss_module, "frozen_models", ()):
        _shard(frozen, frozen.model, policy)
    _shard(loss_module, student, policy)
    return loss_module


def _shard(root: torch.nn.Module, model: PreTrainedModel, policy: MixedPrecisionPolicy) -> None:
    """FSDP2 in place: each of `model`'s decoder layers, then `root` (the rest: embeddings, norm, head)."""
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    fully_shard(root, mp_policy=policy)


def gradient_sync(module: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Within one optimizer step, reduce gradients only after the last micro-batch."""
    if isinstance(module, DistributedDataParallel) and not sync:
        return module.no_sync()
    if isinstance(module, FSDPModule):
        module.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()
