"""A Ray cluster's node types, read from its launcher config: `cluster.yaml`, or the copy the
autoscaler keeps on the head (`~/ray_bootstrap_config.yaml`, written by `ray up` with every
type's CPUs, GPUs and memory filled in). Which node types one Train worker fits on, and how many
trials fit at once when the autoscaler has started every node it may.

    cluster = load_cluster("cluster.yaml")
    fits({"CPU": 4, "GPU": 1}, cluster.node_type("gpu-1x"))     # None: fits; else the reason
    placement({"CPU": 4, "GPU": 1}, 1, cluster).trials_at_once  # 24 with the shipped cluster.yaml

Ray resources are named as Ray names them: "CPU", "GPU", "memory" (bytes) and custom ones.
What the launcher file does not say, `cotstudy plan` reads from its `metadata.cotstudy.node_types`
(a key Ray's schema leaves to the user): each GPU type's kind and each type's price per hour.
No Ray here: `cotstudy plan` reads a cluster file on a machine without one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError

from study.core.datasets import Frozen
from study.core.storage.files import InputError, load_yaml, read_text_file
from study.core.hardware import GPU_NAMES, GPUS, GpuName
from study.core.spec import describe_validation_error

# Where `ray up` leaves the autoscaler's config on the head node (its `ray start --autoscaling-config`).
AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"
GIB = 1024**3
# A worker's share compared with a node's amount: 3 x (4/3 CPU) must fit 4 CPUs despite rounding.
_ROUNDING = 1e-9


class ClusterConfigError(InputError):
    """A cluster config that cannot be read; the message names the file and the field."""


class NodeType(Frozen):
    """One entry of `available_node_types`: what one node of the type offers Ray."""

    name: str
    cpus: float | None = Field(ge=0, description="resources.CPU; None only for a node of `plan --gpu`, whose CPUs are not known")
    gpus: float = Field(0, ge=0, description="resources.GPU")
    gpu: GpuName | None = Field(None, description="the GPU kind (metadata.cotstudy.node_types.<name>.gpu)")
    usd_per_hour: float | None = Field(None, ge=0, description="price of one node-hour (metadata.cotstudy)")
    memory_bytes: float | None = Field(None, ge=0, description="resources.memory; None when the file does not say")
    custom_resources: dict[str, float] = Field(default_factory=dict, description="every other resource")
    max_workers: int | None = Field(ge=0, description="nodes of this type the autoscaler may start (the head: 1); "
                                    "None: as many as asked for (`plan --gpu`)")
    instance_type: str | None = Field(None, description="node_config.InstanceType (AWS) or machineType (GCP)")
    head: bool = False

    @property
    def resources(self) -> dict[str, float]:
        """Ray resources of one node of this type."""
        found = {"GPU": self.gpus, **self.custom_resources}
        if self.cpus is not None:
            found["CPU"] = self.cpus
        if self.memory_bytes is not None:
            found["memory"] = self.memory_bytes
        return found

    def describe(self) -> str:
        cpus = "CPUs not given" if self.cpus is None else f"{self.cpus:g} CPUs"
        offers = f"{cpus}, {self.gpus:g} GPUs{f' ({self.gpu})' if self.gpu else ''}"
        if self.memory_bytes is not None:
            offers += f", {self.memory_bytes / GIB:.0f} GiB memory"
        count = "the head" if self.head else f"up to {self.max_workers} nodes"
        return f"{self.name} ({self.instance_type or 'instance type not given'}: {offers}; {count})"


class ClusterConfig(Frozen):
    source: str = Field(description="the file it was read from, or `--gpu NAME`")
    max_workers: int | None = Field(ge=0, description="worker nodes of all types together; None: no limit")
    node_types: tuple[NodeType, ...]

    def node_type(self, name: str) -> NodeType:
        (found,) = [t for t in self.node_types if t.name == name]
        return found

    def workers(self) -> list[NodeType]:
        """The node types Train workers are started on (all but the head)."""
        return [t for t in self.node_types if not t.head]

    def require_gpu_kinds(self) -> None:
        """Sizing memory needs each GPU node type's GPU kind, which a launcher file does not say."""
        for node_type in self.workers():
            if node_type.gpus and node_type.gpu is None:
                raise ClusterConfigError(
                    f"{self.source}: metadata.cotstudy.node_types.{node_type.name}.gpu: node type '{node_type.name}' "
                    f"has {node_type.gpus:g} GPUs; name their kind, one of {list(GPU_NAMES)}")

    @property
    def head_usd_per_hour(self) -> float | None:
        return next((t.usd_per_hour for t in self.node_types if t.head), None)


class NodePrice(Frozen):
    """cluster.yaml `metadata.cotstudy.node_types.<name>`: what the launcher file itself does not say."""

    gpu: GpuName | None = Field(None, description="The node's GPU kind; needed for a node type with GPUs.")
    usd_per_hour: float | None = Field(None, ge=0, description="Price of one node-hour, for plan's dollars.")


class ClusterMetadata(Frozen):
    node_types: dict[str, NodePrice] = Field(default_factory=dict)


def gpu_cluster(name: GpuName) -> ClusterConfig:
    """Nodes of one GPU each, as many as cells ask for (`cotstudy plan --gpu NAME`)."""
    return ClusterConfig(source=f"--gpu {name}", max_workers=None,
                         node_types=(NodeType(name=name, gpu=name, gpus=1, cpus=None, max_workers=None),))


def any_gpu_cluster() -> ClusterConfig:
    """Every listed GPU: what `run` checks a GPU study against when no cluster is named."""
    return ClusterConfig(source="any listed GPU", max_workers=None,
                         node_types=tuple(NodeType(name=name, gpu=name, gpus=8, cpus=None, max_workers=None)
                                          for name in GPUS))


def load_cluster(path: str | Path) -> ClusterConfig:
    """A cluster launcher config (YAML, or the autoscaler's JSON copy) as typed node types."""
    try:
        path = Path(path).expanduser()
    except RuntimeError:  # ~user with no such user
        raise ClusterConfigError(f"{path}: no such user's home folder") from None
    if path.is_dir():
        raise ClusterConfigError(f"{path}: no such cluster config (it is a folder)")
    text = read_text_file(path, ClusterConfigError, "cluster config")
    return parse_cluster(load_yaml(text, str(path), ClusterConfigError), str(path))


def parse_cluster(config: object, source: str) -> ClusterConfig:
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        raise ClusterConfigError(f"{source}: available_node_types: missing (a Ray cluster launcher config has it)")
    head = config.get("head_node_type")
    if head not in config["available_node_types"]:
        raise ClusterConfigError(f"{source}: head_node_type: '{head}' is not one of available_node_types")
    prices = _metadata(config, source).node_types
    types = tuple(_node_type(name, entry, name == head, source, prices.get(name, NodePrice()))
                  for name, entry in config["available_node_types"].items())
    workers_cap = config.get("max_workers", sum(t.max_workers for t in types if not t.head))
    try:
        return ClusterConfig(source=source, max_workers=workers_cap, node_types=types)
    except ValidationError as error:
        raise ClusterConfigError(f"{source}: max_workers: {error.errors()[0]['msg']}") from None


def _metadata(config: dict, source: str) -> ClusterMetadata:
    try:
        metadata = ClusterMetadata.model_validate((config.get("metadata") or {}).get("cotstudy") or {})
    except ValidationError as error:
        raise ClusterConfigError(f"{source}: metadata.cotstudy.{describe_validation_error(error)}") from None
    unknown = sorted(set(metadata.node_types) - set(config["available_node_types"]))
    if unknown:
        raise ClusterConfigError(f"{source}: metadata.cotstudy.node_types: {unknown} are not in available_node_types")
    return metadata


def _node_type(name: str, entry: object, head: bool, source: str, price: NodePrice) -> NodeType:
    where = f"{source}: available_node_types.{name}"
    if not isinstance(entry, dict):
        raise ClusterConfigError(f"{where}: expected a mapping")
    resources = dict(entry.get("resources") or {})
    if "CPU" not in resources:
        raise ClusterConfigError(f"{where}.resources.CPU: not given; declare the type's CPUs (and GPUs) "
                                 "in the file, cotstudy does not look up instance types")
    node_config = entry.get("node_config") or {}
    try:
        return NodeType(name=name, cpus=resources.pop("CPU"), gpus=resources.pop("GPU", 0), gpu=price.gpu,
                        usd_per_hour=price.usd_per_hour,
                        memory_bytes=resources.pop("memory", None), custom_resources=resources,
                        max_workers=1 if head else entry.get("max_workers", 0), head=head,
                        instance_type=node_config.get("InstanceType") or node_config.get("machineType"))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ClusterConfigError(f"{where}: {field}: {first['msg']}") from None


def workers_per_node(per_worker: Mapping[str, float], node: Mapping[str, float]) -> int:
    """How many Train workers asking `per_worker` one node offering `node` holds. Resources a
    worker does not ask for (amount 0) do not limit it; it always asks for CPUs (the spec's
    cpus_per_worker > 0)."""
    wanted = {kind: amount for kind, amount in per_worker.items() if amount > 0}
    return min(int(node.get(kind, 0.0) / amount + _ROUNDING) for kind, amount in wanted.items())


def fits(per_worker: Mapping[str, float], node_type: NodeType) -> str | None:
    """None when one Train worker asking `per_worker` fits on a node of this type; else why not."""
    short = []
    for kind, amount in per_worker.items():
        if amount <= 0:
            continue
        if kind == "memory" and node_type.memory_bytes is None:
            short.append("memory (the type does not declare its memory)")
        elif node_type.resources.get(kind, 0.0) + _ROUNDING < amount:
            short.append(f"{_amount(kind, amount)} per worker, the type has {_amount(kind, node_type.resources.get(kind, 0.0))}")
    return "; ".join(short) or None


def _amount(kind: str, amount: float) -> str:
    return f"{amount / GIB:.1f} GiB memory" if kind == "memory" else f"{amount:g} {kind}s"


def trials_at_once(per_worker: Mapping[str, float], workers_per_trial: int, nodes: list[Mapping[str, float]]) -> int:
    """Trials whose Train workers the given nodes hold together (a trial's workers may span nodes)."""
    return sum(workers_per_node(per_worker, node) for node in nodes) // workers_per_trial


@dataclass(frozen=True)
class Placement:
    """Where one trial's Train workers go on a cluster at its largest: per node type, None if a
    worker fits on it, else why not; and how many trials fit at once."""

    cluster: ClusterConfig
    per_worker: dict[str, float]
    workers_per_trial: int
    why_not: dict[str, str | None]
    trials_at_once: int

    def lines(self) -> list[str]:
        asked = ", ".join(_amount(kind, amount) for kind, amount in self.per_worker.items() if amount > 0)
        found = [f"each trial: {self.workers_per_trial} Train worker(s) of {asked} ({self.cluster.source})"]
        for node_type in self.cluster.node_types:
            reason = self.why_not[node_type.name]
            verdict = (f"fits, {workers_per_node(self.per_worker, node_type.resources)} worker(s) per node"
                       if reason is None else f"does not fit: {reason}")
            found.append(f"  {node_type.describe()}: {verdict}")
        found.append(f"trials at once with every node the autoscaler may start: {self.trials_at_once}")
        return found

    def refusal(self) -> str | None:
        """Why no trial can ever be placed on this cluster, or None."""
        if self.trials_at_once >= 1:
            return None
        if all(reason is not None for reason in self.why_not.values()):
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.why_not.items())
            return (f"{self.cluster.source}: no node type fits one Train worker ({reasons}); lower resources "
                    "(cpus_per_worker, gpus_per_worker) or add a node type that has them")
        return (f"{self.cluster.source}: one trial needs {self.workers_per_trial} Train workers, but every node the "
                "autoscaler may start holds fewer; lower resources.workers_per_trial or raise max_workers")


def placement(per_worker: Mapping[str, float], workers_per_trial: int, cluster: ClusterConfig) -> Placement:
    """Fit one trial's workers on each node type, and count the trials the cluster holds at once
    when every type runs its max_workers nodes (at most the cluster's max_workers in all; the
    autoscaler starts the types the trials fit on, so the roomiest nodes are counted first)."""
    per_worker = dict(per_worker)
    why_not = {t.name: fits(per_worker, t) for t in cluster.node_types}
    heads = [t.resources for t in cluster.node_types if t.head]
    workers = sorted((t.resources for t in cluster.workers() for _ in range(t.max_workers or 0)),
                     key=lambda node: workers_per_node(per_worker, node), reverse=True)
    total = trials_at_once(per_worker, workers_per_trial, heads + workers[:cluster.max_workers])
    return Placement(cluster=cluster, per_worker=per_worker, workers_per_trial=workers_per_trial,
                     why_not=why_not, trials_at_once=total)


def on_cluster() -> bool:
    """Joined to a Ray cluster through RAY_ADDRESS (`ray job submit` sets it), rather than a local
    Ray started for this run."""
    return "RAY_ADDRESS" in os.environ
