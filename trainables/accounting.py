"""What training costs: the model FLOPs of the documents trained on, and MFU against the GPU's
dense bf16 peak. Shared by the Train loop and bench/train_throughput.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Dense bf16 peak FLOP/s by GPU name (datasheet figures, no sparsity); a GPU not listed gets no MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _matmul_flops_per_token(weight: torch.Tensor) -> int:
    """Forward 2 + gradient of the input 2 per parameter; + 2 for the weight's own gradient when
    it trains (a LoRA run's frozen base weights need none)."""
    return (6 if weight.requires_grad else 4) * weight.numel()


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs that documents need: per token, 6 per trained matmul parameter (4 per frozen
    one), the LM head's only at target tokens, the only place it is needed; plus causal attention
    inside each document (6 x layers x hidden x length^2). Padding is never counted."""

    body_flops: int  # per token
    head_flops: int  # per target token
    layers_x_hidden: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopCount:
        head = model.get_output_embeddings()
        body = sum(_matmul_flops_per_token(m.weight) for m in model.modules()
                   if isinstance(m, torch.nn.Linear) and m is not head)
        config = model.config
        return cls(body, _matmul_flops_per_token(head.weight), config.num_hidden_layers * config.hidden_size)

    def __call__(self, lengths: list[int], targets: int) -> float:
        attention = 6 * self.layers_x_hidden * sum(n * n for n in lengths)
        return self.body_flops * sum(lengths) + self.head_flops * targets + attention


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, when it is a GPU in PEAK_BF16_FLOPS."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)
