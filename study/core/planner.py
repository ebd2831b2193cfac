"""What a study will cost before it runs (`cotstudy plan`), and the check `run` makes first.

Per cell: peak memory per GPU for its layout (study/core/footprint.py), train FLOPs as
trainables/accounting.py counts them and GPU-hours at a stated MFU, evaluation time, the node type
it runs on (the cheapest of the cluster's that fits it), its dollars and the storage it leaves. A
cell that fits no node type is refused, with the fixes that would make it fit. Pure: the caller
gives each corpus's lengths and each student's architecture (study/run/planning.py finds them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from study.core.architectures import Architecture
from study.core.cells import Cell
from study.core.datasets import load_split
from study.core.footprint import MemoryEstimate, MicroBatch, TrainLayout, estimate_memory
from study.core.cluster import ClusterConfig, NodeType
from study.core.hardware import GPUS, Gpu
from study.core.profiles import decoding
from study.core.spec import ResourcesSpec, SpecError, TrainSettings

# Measured by bench/train_throughput.py (its docstring): H100, a LLaMA-3.2-1B-shaped student, packed
# rows of 512, 32k-token steps: 27.9% MFU as the trainer runs by default, 40.7% with each decoder
# layer compiled (resources.compile). Other GPUs and students are assumed to reach the same.
MEASURED_MFU = {False: 0.279, True: 0.407}
MFU_SOURCE = "bench/train_throughput.py on an H100, LLaMA-3.2-1B shape"


class PlanError(SpecError):
    """Cells that fit no node type; nothing was started. The message names each fix."""


@dataclass(frozen=True)
class CorpusLengths:
    """A corpus's examples in (estimated) student tokens: prompt in the student's template plus
    rationale; `target_fraction` of them are rationale tokens (what the loss and LM head see)."""

    examples: int
    mean_tokens: float
    mean_squared_tokens: float
    max_tokens: int
    target_fraction: float

    def with_prompt(self, extra_tokens: int, max_length: int) -> CorpusLengths:
        """The same examples with `extra_tokens` more prompt each (a template's wrapper), cut at max_length."""
        mean = self.mean_tokens + extra_tokens
        squares = self.mean_squared_tokens + 2 * extra_tokens * self.mean_tokens + extra_tokens**2
        targets = self.target_fraction * self.mean_tokens / mean
        return CorpusLengths(self.examples, mean, squares, min(max_length, self.max_tokens + extra_tokens), targets)


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    gpus_per_trial: float  # resources: workers_per_trial x gpus_per_worker
    architecture: Architecture | None  # None: a student whose size is unknown here
    lengths: CorpusLengths | None  # None: a corpus a teacher must generate first
    memory: MemoryEstimate | None = None  # one worker's peak
    memory_per_gpu_gb: float | None = None
    train_tokens: float | None = None
    train_flops: float | None = None
    node: NodeType | None = None  # where it runs; None on CPU, when unknown, or when it fits nowhere
    train_s: float | None = None  # wall seconds of training on its workers
    eval_s: float | None = None
    refusal: str | None = None  # why it fits no node type, and the fixes
    final_bytes: float | None = None  # the trained student (or its adapters), kept after the cell
    optimizer_bytes: float | None = None  # deleted once the cell's result is written

    @property
    def wall_s(self) -> float | None:
        return None if self.train_s is None or self.eval_s is None else self.train_s + self.eval_s

    @property
    def gpu_hours(self) -> float | None:
        """Every worker's GPU, for training and for evaluation (rank 0 evaluates while the others wait)."""
        return None if self.wall_s is None else self.gpus_per_trial * self.wall_s / 3600


def train_layout(train: TrainSettings, resources: ResourcesSpec) -> TrainLayout:
    lora = train.finetune == "lora"
    return TrainLayout(device="cuda" if resources.gpus_per_worker > 0 else "cpu", workers=resources.workers_per_trial,
                       sharding=resources.sharding, activation_checkpointing=resources.activation_checkpointing,
                       lora_rank=train.lora.rank if lora else None, lora_targets=tuple(train.lora.targets),
                       lora_dropout=train.lora.dropout > 0)


def micro_batch(train: TrainSettings, workers: int, lengths: CorpusLengths) -> MicroBatch:
    """The largest forward pass of one worker, an upper bound: its share of the step that holds the
    corpus's longest example (a fixed number of examples, or a token budget) in rows as long as that
    example (or pack_length), one spare row for the padding packing leaves; split by
    micro_batch_tokens. Packing without pack_length puts each example in its own row, in
    length-grouped micro-batches (trainables.packing.length_groups): bounded by the same tokens in
    rows of the longest example, counted as two micro-batches a step (the first one's gradients
    held at the second), an upper bound when a step makes one group."""
    longest = lengths.max_tokens
    if train.examples_per_batch is not None:
        examples = math.ceil(train.examples_per_batch / workers)
    else:
        examples = max(1, int(train.tokens_per_batch / (lengths.mean_tokens if train.packing else longest)))
    if train.packing:
        row_length = train.pack_length or longest
        rows = math.ceil((examples - 1) * lengths.mean_tokens / row_length) + 1
        row_groups = 1 if train.pack_length else 2
    else:
        row_length, rows, row_groups = longest, examples, 1
    per_micro = rows if train.micro_batch_tokens is None else max(1, train.micro_batch_tokens // row_length)
    rows_now = min(rows, per_micro)
    filled = min(1.0, ((examples - 1) * lengths.mean_tokens + longest) / (rows * row_length))
    targets = int(rows_now * row_length * filled * lengths.target_fraction)
    return MicroBatch(rows_now, row_length, targets, per_step=max(row_groups, math.ceil(rows / per_micro)))


def train_tokens(train: TrainSettings, workers: int, lengths: CorpusLengths) -> float:
    """Tokens trained on (no padding): epochs over the corpus, or max_steps steps."""
    if train.max_steps is None:
        return train.epochs * lengths.examples * lengths.mean_tokens
    if train.examples_per_batch is not None:
        return train.max_steps * train.examples_per_batch * lengths.mean_tokens
    return train.max_steps * workers * train.tokens_per_batch


def memory_per_gpu(memory: MemoryEstimate, resources: ResourcesSpec) -> float:
    """GiB on one GPU: a worker's peak, times the workers that share a GPU (gpus_per_worker < 1)."""
    sharing = max(1, math.floor(1 / resources.gpus_per_worker)) if 0 < resources.gpus_per_worker < 1 else 1
    return memory.total_gb() * sharing


def misfit(node: NodeType, resources: ResourcesSpec, gb: float) -> str | None:
    """Why a cell's worker cannot run on this node type; None when it can."""
    if node.gpu is None or node.gpus < resources.gpus_per_worker:
        return f"{node.gpus:g} GPUs per node, a worker asks for {resources.gpus_per_worker:g}"
    if node.cpus is not None and node.cpus < resources.cpus_per_worker:
        return f"{node.cpus:g} CPUs per node, a worker asks for resources.cpus_per_worker={resources.cpus_per_worker:g}"
    if gb > GPUS[node.gpu].memory_gb:
        return f"its {node.gpu} has {GPUS[node.gpu].memory_gb:g} GB"
    return None


def choose_node(cluster: ClusterConfig, resources: ResourcesSpec, gb: float) -> NodeType | None:
    """The node type that fits at the lowest price per GPU (unpriced: the smallest GPU that fits)."""
    fitting = [node for node in cluster.workers() if misfit(node, resources, gb) is None]
    if not fitting:
        return None
    return min(fitting, key=lambda node: (node.usd_per_hour / node.gpus if node.usd_per_hour is not None else math.inf,
                                          GPUS[node.gpu].memory_gb, node.gpus))


def eval_seconds(arch: Architecture, gpu: Gpu, cell: Cell, lengths: CorpusLengths) -> float:
    """Decoding the test split at the GPU's memory bandwidth: each step reads the bf16 weights and
    the batch's KV cache once. A lower bound: no engine start-up, no per-step launch overhead."""
    problems = len(load_split(cell.corpus.dataset, "test")[: cell.evaluation.test_size])
    plan = decoding(cell.evaluation.profile, cell.corpus.dataset.name, cell.evaluation.max_new_tokens)
    generated = min(plan.max_new_tokens, lengths.max_tokens)
    rows = min(cell.evaluation.batch_size, problems) * plan.beams
    context = lengths.mean_tokens * (1 - lengths.target_fraction) + generated / 2
    kv_cache = 2 * arch.layers * arch.kv_width * 2 * rows * context
    step_s = (2 * arch.parameters + kv_cache) / (gpu.bandwidth_gbs * 1e9)
    return math.ceil(problems / cell.evaluation.batch_size) * generated * step_s


def cell_memory_gb(arch: Architecture, train: TrainSettings, resources: ResourcesSpec,
                   lengths: CorpusLengths) -> tuple[MemoryEstimate, float]:
    """One worker's peak, and what it puts on one GPU."""
    if not arch.packs_documents_apart:  # trained on padded rows (see Architecture.packs_documents_apart)
        train = train.model_copy(update={"packing": False})
    memory = estimate_memory(arch, train_layout(train, resources), micro_batch(train, resources.workers_per_trial, lengths),
                             masked=train.packing and train.pack_length is not None)
    return memory, memory_per_gpu(memory, resources)


def fixes(arch: Architecture, train: TrainSettings, resources: ResourcesSpec, lengths: CorpusLengths,
          cluster: ClusterConfig) -> list[str]:
    """Changes that would make the cell fit the cluster's largest GPU, each with its GB per GPU."""
    largest = max((GPUS[n.gpu].memory_gb for n in cluster.workers() if n.gpu is not None), default=0.0)
    found = []

    def gb(settings: TrainSettings = train, layout: ResourcesSpec = resources) -> float:
        return cell_memory_gb(arch, settings, layout, lengths)[1]

    if train.finetune == "full" and (lora := gb(train.model_copy(update={"finetune": "lora"}))) <= largest:
        found.append(f"training.finetune: lora ({lora:.1f} GB)")
    for workers in (2, 4, 8, 16):
        sharded = resources.model_copy(update={"workers_per_trial": workers, "sharding": "fsdp"})
        if workers > resources.workers_per_trial and (fsdp := gb(layout=sharded)) <= largest:
            found.append(f"resources.workers_per_trial: {workers} with sharding: fsdp ({fsdp:.1f} GB per GPU)")
            break
    if not resources.activation_checkpointing:
        checkpointed = gb(layout=resources.model_copy(update={"activation_checkpointing": True}))
        if checkpointed <= largest:
            found.append(f"resources.activation_checkpointing: true ({checkpointed:.1f} GB)")
    needed = gb()
    bigger = [gpu for gpu in GPUS.values() if gpu.memory_gb >= needed]
    if bigger:
        smallest = min(bigger, key=lambda gpu: gpu.memory_gb)
        found.append(f"a node type with {smallest.name} GPUs ({smallest.memory_gb:g} GB) or larger")
    return found


def plan_cell(cell: Cell, resources: ResourcesSpec, architecture: Architecture | None, lengths: CorpusLengths | None,
              cluster: ClusterConfig | None, mfu: float) -> CellPlan:
    gpus = resources.workers_per_trial * resources.gpus_per_worker
    plan = CellPlan(cell, gpus, architecture, lengths)
    if architecture is None or lengths is None:
        return plan
    train = cell.train
    memory, per_gpu = cell_memory_gb(architecture, train, resources, lengths)
    layout = train_layout(train, resources)
    tokens = train_tokens(train, resources.workers_per_trial, lengths)
    squares = tokens / lengths.mean_tokens * lengths.mean_squared_tokens
    counter = architecture.flop_count(layout.lora_rank, list(layout.lora_targets))
    flops = counter.of_totals(tokens, tokens * lengths.target_fraction, squares)
    trained = (architecture.parameters if layout.lora_rank is None
               else architecture.lora_parameters(layout.lora_rank, list(layout.lora_targets)))
    final = 4 * trained  # fp32: the whole student, or a LoRA run's adapters
    plan = replace(plan, memory=memory, memory_per_gpu_gb=per_gpu, train_tokens=tokens, train_flops=flops,
                   final_bytes=final, optimizer_bytes=8 * trained)
    if cluster is None or layout.device == "cpu":
        return plan
    node = choose_node(cluster, resources, per_gpu)
    if node is None:
        return replace(plan, refusal=_refusal(cell, per_gpu, resources, cluster, fixes(architecture, train, resources,
                                                                                        lengths, cluster)))
    gpu = GPUS[node.gpu]
    train_s = flops / (resources.workers_per_trial * gpu.bf16_flops * mfu)
    return replace(plan, node=node, train_s=train_s, eval_s=eval_seconds(architecture, gpu, cell, lengths))


def _refusal(cell: Cell, gb: float, resources: ResourcesSpec, cluster: ClusterConfig, found: list[str]) -> str:
    why = "; ".join(f"{node.name}: {misfit(node, resources, gb)}" for node in cluster.workers())
    return (f"cell {cell.name} [{cell.cell_id}] needs {gb:.1f} GB per GPU and fits no node type of {cluster.source} "
            f"({why or 'it has none'}). Fixes: {'; or '.join(found) or 'none found'}")


@dataclass(frozen=True)
class StudyPlan:
    cells: list[CellPlan]
    cluster: ClusterConfig | None
    resources: ResourcesSpec
    mfu: float

    @property
    def refusals(self) -> list[str]:
        return [c.refusal for c in self.cells if c.refusal is not None]

    def gpu_hours(self) -> float:
        return sum(c.gpu_hours or 0.0 for c in self.cells)

    def usd(self) -> float | None:
        """Node-hours at the node types' prices (a trial's share of a node: its GPUs), or GPU-hours at
        resources.usd_per_gpu_hour; plus the head for the wall time. None when no price is known."""
        total, priced = 0.0, False
        for cell in self.cells:
            if cell.node is None or cell.gpu_hours is None:
                continue
            if cell.node.usd_per_hour is not None:
                total += cell.gpu_hours * cell.node.usd_per_hour / cell.node.gpus
                priced = True
            elif self.resources.usd_per_gpu_hour is not None:
                total += cell.gpu_hours * self.resources.usd_per_gpu_hour
                priced = True
        if self.cluster is not None and self.cluster.head_usd_per_hour is not None:
            total += self.wall_hours() * self.cluster.head_usd_per_hour
        return total if priced else None

    def wall_hours(self) -> float:
        """On the cluster's maximum workers: each node type's cells run as many at once as its nodes
        hold (and max_concurrent_trials allows), the node types side by side."""
        walls = [0.0]
        for node in {c.node.name: c.node for c in self.cells if c.node is not None}.values():
            times = [c.wall_s for c in self.cells if c.node is not None and c.node.name == node.name and c.wall_s]
            slots = self.slots(node)
            walls.append(max(max(times, default=0.0), sum(times) / slots))
        return max(walls) / 3600

    def slots(self, node: NodeType) -> float:
        """Trials of this spec that the node type runs at once."""
        limits = [n for n in (node.max_workers, self.cluster.max_workers if self.cluster else None) if n is not None]
        nodes = min(limits) if limits else math.inf
        gpus = self.resources.workers_per_trial * self.resources.gpus_per_worker
        per_node = node.gpus // gpus if gpus <= node.gpus else 1 / math.ceil(gpus / node.gpus)
        at_once = nodes * per_node
        if self.resources.max_concurrent_trials is not None:
            at_once = min(at_once, self.resources.max_concurrent_trials)
        return max(at_once, 1)

    def storage_bytes(self) -> tuple[float, float]:
        """Students kept when every cell is done, and the most one running cell adds (its optimizer)."""
        return (sum(c.final_bytes or 0.0 for c in self.cells),
                max((c.optimizer_bytes or 0.0 for c in self.cells), default=0.0))


def require_fit(plan: StudyPlan) -> None:
    """Refuse a study with a cell that fits no node type, naming the first few and their fixes."""
    refusals = plan.refusals
    if refusals:
        more = f"\n(and {len(refusals) - 3} more cells)" if len(refusals) > 3 else ""
        raise PlanError("\n".join(refusals[:3]) + more)
