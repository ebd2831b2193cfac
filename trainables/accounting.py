"""What training costs: the model FLOPs of the documents trained on, and MFU against the GPU's
dense bf16 peak. Shared by the Train loop and bench/train_throughput.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Dense bf16 peak FLOP/s by GPU name (datasheet figures, no sparsity); a GPU not listed gets no MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs that documents need: 6 per matmul parameter per token (the LM head's only at
    target tokens, the only place it is needed), plus causal attention inside each document
    (6 x layers x hidden x length^2). Padding is never counted."""

    body_params: int
    head_params: int
    layers_x_hidden: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopCount:
        matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        head_params = model.get_output_embeddings().weight.numel()
        return cls(matmul_params - head_params, head_params, model.config.num_hidden_layers * model.config.hidden_size)

    def __call__(self, lengths: list[int], targets: int) -> float:
        attention = 6 * self.layers_x_hidden * sum(n * n for n in lengths)
        return 6 * self.body_params * sum(lengths) + 6 * self.head_params * targets + attention


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, when it is a GPU in PEAK_BF16_FLOPS."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)
