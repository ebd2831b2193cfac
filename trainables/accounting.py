"""What training costs: the model FLOPs of the documents trained on, and MFU against the GPU's
dense bf16 peak (study/core/hardware.py, which the planner shares). Shared by the Train loop and
bench/train_throughput.py."""

from __future__ import annotations

import torch

from study.core.hardware import FlopCount, gpu_of_device


def _matmul_flops_per_token(weight: torch.Tensor) -> int:
    """Forward 2 + gradient of the input 2 per parameter; + 2 for the weight's own gradient when
    it trains (a LoRA run's frozen base weights need none)."""
    return (6 if weight.requires_grad else 4) * weight.numel()


def flop_count(model: torch.nn.Module) -> FlopCount:
    """The model's FlopCount (study/core/hardware.py): every Linear but the LM head in the body,
    the head apart (it runs at target tokens only)."""
    head = model.get_output_embeddings()
    body = sum(_matmul_flops_per_token(m.weight) for m in model.modules()
               if isinstance(m, torch.nn.Linear) and m is not head)
    config = model.config
    return FlopCount(body, _matmul_flops_per_token(head.weight), config.num_hidden_layers * config.hidden_size)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, when it is a GPU listed in study/core/hardware.py."""
    if device.type != "cuda":
        return None
    gpu = gpu_of_device(torch.cuda.get_device_name(device))
    return None if gpu is None else gpu.bf16_flops
