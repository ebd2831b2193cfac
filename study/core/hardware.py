"""GPUs and cluster node types, as data: what `cotstudy plan` fits cells into and prices
(study/core/planner.py), and the dense bf16 peak that training's MFU is measured against
(trainables/accounting.py).

    GPUS["a10g"].memory_gb       24
    load_cluster("cluster.yaml") the node types of a Ray cluster launcher file, with the GPU kind and
                                 price of each from its `metadata.cotstudy.node_types` (a key Ray's
                                 schema leaves to the user and does not interpret)
    gpu_cluster("a100-80")       one node type of that GPU (`cotstudy plan --gpu`)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import Field, ValidationError

from study.core.spec import Frozen, SpecError, describe_validation_error

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


class ClusterError(SpecError):
    """A cluster file that cannot be planned for; the message names the file and the field."""


class NodeType(Frozen):
    """One kind of node a cell's Train workers may run on."""

    name: str
    gpu: GpuName | None = None
    gpus: int = 0
    cpus: float | None = None  # None: detected when the node starts (not declared in the file)
    max_workers: int | None = None  # None: as many as asked for
    usd_per_hour: float | None = None


class Cluster(Frozen):
    source: str  # the file, or "--gpu NAME"
    node_types: list[NodeType]
    max_workers: int | None = None  # worker nodes of all types together
    head_usd_per_hour: float | None = None


class NodePrice(Frozen):
    """cluster.yaml `metadata.cotstudy.node_types.<name>`: what the file itself does not say."""

    gpu: GpuName | None = Field(None, description="The node's GPU kind; needed for a node type with GPUs.")
    usd_per_hour: float | None = Field(None, ge=0, description="Price of one node-hour, for plan's dollars.")


class ClusterMetadata(Frozen):
    node_types: dict[str, NodePrice] = Field(default_factory=dict)


def load_cluster(path: str | Path) -> Cluster:
    """The node types of a Ray cluster launcher file, each with its GPU kind and price."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ClusterError(f"{path}: no such cluster file") from None
    except yaml.YAMLError as error:
        raise ClusterError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("available_node_types"), dict):
        raise ClusterError(f"{path}: available_node_types: a cluster file maps node type names to their settings")
    try:
        metadata = ClusterMetadata.model_validate((raw.get("metadata") or {}).get("cotstudy") or {})
    except ValidationError as error:
        raise ClusterError(f"{path}: metadata.cotstudy.{describe_validation_error(error)}") from None
    types = raw["available_node_types"]
    unknown = sorted(set(metadata.node_types) - set(types))
    if unknown:
        raise ClusterError(f"{path}: metadata.cotstudy.node_types: {unknown} are not in available_node_types")
    head = raw.get("head_node_type")
    nodes = [_node_type(path, name, settings, metadata.node_types.get(name, NodePrice()))
             for name, settings in types.items() if name != head]
    head_price = metadata.node_types.get(head, NodePrice()).usd_per_hour
    return Cluster(source=str(path), node_types=nodes, max_workers=raw.get("max_workers"), head_usd_per_hour=head_price)


def _node_type(path: Path, name: str, settings: dict, price: NodePrice) -> NodeType:
    resources = settings.get("resources") or {}
    gpus = int(resources.get("GPU", 0))
    if gpus and price.gpu is None:
        raise ClusterError(f"{path}: metadata.cotstudy.node_types.{name}.gpu: node type '{name}' has {gpus} GPUs; "
                           f"name their kind, one of {list(GPU_NAMES)}")
    return NodeType(name=name, gpu=price.gpu, gpus=gpus, cpus=resources.get("CPU"),
                    max_workers=settings.get("max_workers"), usd_per_hour=price.usd_per_hour)


def gpu_cluster(name: GpuName) -> Cluster:
    """Nodes of one GPU each, as many as cells ask for (`cotstudy plan --gpu NAME`)."""
    return Cluster(source=f"--gpu {name}", node_types=[NodeType(name=name, gpu=name, gpus=1)])


def any_gpu_cluster() -> Cluster:
    """Every listed GPU: what `run` checks a GPU study against when no cluster is named."""
    return Cluster(source="any listed GPU", node_types=[NodeType(name=name, gpu=name, gpus=8) for name in GPUS])


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
