"""GPUs, as data: what `cotstudy plan` fits cells into (study/core/planner.py), and the dense bf16 peak that training's MFU is measured against
(trainables/accounting.py).

    GPUS["a10g"].memory_gb       24

Node types of a cluster (with the GPU kind and price of each) are read by study/core/cluster.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

GpuName = Literal["a10g", "l4", "a100-40", "a100-80", "h100", "h200"]


@dataclass(frozen=True)
class Gpu:
    """One GPU kind, by its datasheet (dense bf16, no sparsity)."""

    name: GpuName
    device_name: str  # the word torch.cuda.get_device_name() holds for it
    memory_gb: float  # capacity, GiB
    bf16_flops: float  # dense bf16 peak, FLOP/s
    bandwidth_gbs: float  # memory bandwidth, GB/s (1e9 bytes)


# NVIDIA datasheets (A100 SXM4, H100 SXM5, H200 SXM, L4). AWS publishes no A10G datasheet: its 70
# TFLOP/s bf16 is the figure Baseten's "NVIDIA A10 vs A10G" comparison and MosaicML's composer use
# (the A10's own 125 is not the A10G's).
GPUS: dict[str, Gpu] = {gpu.name: gpu for gpu in (
    Gpu("a10g", "A10G", 24, 70e12, 600),
    Gpu("l4", "L4", 24, 121e12, 300),
    Gpu("a100-40", "A100", 40, 312e12, 1555),
    Gpu("a100-80", "A100", 80, 312e12, 2039),
    Gpu("h100", "H100", 80, 989e12, 3350),
    Gpu("h200", "H200", 141, 989e12, 4800),
)}
GPU_NAMES: tuple[str, ...] = get_args(GpuName)


def gpu_of_device(device_name: str) -> Gpu | None:
    """The listed GPU a CUDA device name ("NVIDIA A100-SXM4-80GB") is, by its word (both A100s
    have one peak); None for a GPU not listed ("NVIDIA L40S" is not an L4)."""
    return next((gpu for gpu in GPUS.values() if re.search(rf"\b{gpu.device_name}\b", device_name)), None)


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs that documents need: per token, 6 per trained matmul parameter (4 per frozen
    one: no weight gradient), the LM head's only at target tokens, the only place it is needed;
    plus causal attention inside each document (6 x layers x hidden x length^2). Padding is never
    counted. Built from a model (trainables.accounting.flop_count) or an architecture's numbers
    (study.core.architectures)."""

    body_flops: int  # per token
    head_flops: int  # per target token
    layers_x_hidden: int

    def __call__(self, lengths: list[int], targets: int) -> float:
        return self.of_totals(sum(lengths), targets, sum(n * n for n in lengths))

    def of_totals(self, tokens: float, targets: float, squared_lengths: float) -> float:
        """From the documents' token count, target count and sum of squared lengths."""
        return self.body_flops * tokens + self.head_flops * targets + 6 * self.layers_x_hidden * squared_lengths
