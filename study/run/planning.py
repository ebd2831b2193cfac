"""`cotstudy plan`'s cost and memory section, and the check `run` makes before anything starts.

    plan_study(spec, cluster, mfu)   every cell's StudyPlan (study/core/planner.py), with each
                                     corpus's lengths estimated offline and each student's
                                     architecture known without downloading
    check_fit(spec, cluster)         refuse a GPU study with a cell that fits no node type (PlanError)
    largest_students_first(spec, cells)  the order a grid starts its cells
    print_plan(plan)                 a table per data set, then the totals

Students' sizes: a tiny student from its config (with the spec's tokenizer vocabulary), a hub id
from study/core/architectures.py's table, a local folder (or the Hugging Face cache) from its
config.json; none of these downloads anything.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from study.core.architectures import HUB_ARCHITECTURES, Architecture, architecture_of_config, architecture_of_tiny
from study.core.cells import Cell, CorpusKey, corpus_keys, expand_grid
from study.core.datasets import load_split, problem_text, question_prompt
from study.core.cluster import ClusterConfig, any_gpu_cluster
from study.core.planner import (
    MEASURED_MFU,
    MFU_SOURCE,
    CellPlan,
    CorpusLengths,
    StudyPlan,
    plan_cell,
    require_fit,
)
from study.core.spec import StudentSpec, StudySpec
from study.core.templates import student_template, template_prompt
from study.run.inputs import count_tokens, example_token_counts


def student_architecture(student: StudentSpec, spec: StudySpec) -> Architecture | None:
    """The student's architecture, or None when it is not known without a download."""
    if student.tiny is not None:
        return architecture_of_tiny(student.tiny, spec.tokenizer.vocab_size)
    if student.hf_id in HUB_ARCHITECTURES:
        return HUB_ARCHITECTURES[student.hf_id]
    config = _local_config(student.hf_id)
    return None if config is None else architecture_of_config(json.loads(config.read_text()), str(config))


def _local_config(hf_id: str) -> Path | None:
    """A student folder's config.json, or the one already in the Hugging Face cache."""
    folder = Path(hf_id) / "config.json"
    if folder.is_file():
        return folder
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hf_id, "config.json")
    return Path(cached) if isinstance(cached, str) else None


def corpus_lengths(key: CorpusKey) -> CorpusLengths | None:
    """A corpus's example lengths in the `plain` template; the prompt share from the data set's questions."""
    counts = example_token_counts(key)
    if not counts:
        return None
    mean = statistics.fmean(counts)
    prompts = statistics.fmean(count_tokens(question_prompt(key.dataset.name, problem_text(p)))
                               for p in load_split(key.dataset, "train"))
    return CorpusLengths(len(counts), mean, statistics.fmean(n * n for n in counts), max(counts),
                         target_fraction=min(1.0, max(0.05, 1 - prompts / mean)))


def template_extra_tokens(student: StudentSpec, dataset: str) -> int:
    """What the student's template adds to the `plain` prompt, in estimated tokens (BOS included)."""
    template = student_template(student.template)
    if template.kind != "text":
        return 0
    wrapper = count_tokens(template_prompt(student.template, dataset, "")) - count_tokens(question_prompt(dataset, ""))
    return max(0, wrapper) + (1 if template.bos else 0)


def plan_study(spec: StudySpec, cluster: ClusterConfig | None, mfu: float | None = None) -> StudyPlan:
    if cluster is not None:
        cluster.require_gpu_kinds()
    mfu = MEASURED_MFU[spec.resources.compile] if mfu is None else mfu
    lengths = {key.corpus_id: corpus_lengths(key) for key in corpus_keys(spec)}
    architectures = {s.name: student_architecture(s, spec) for s in spec.students}
    cells = []
    for cell in expand_grid(spec):
        base = lengths[cell.corpus.corpus_id]
        extra = template_extra_tokens(cell.student, cell.corpus.dataset.name)
        shaped = None if base is None else base.with_prompt(extra, cell.train.max_length)
        cells.append(plan_cell(cell, spec.resources, architectures[cell.student.name], shaped, cluster, mfu))
    return StudyPlan(cells, cluster, spec.resources, mfu)


def largest_students_first(spec: StudySpec, cells: list[Cell]) -> list[Cell]:
    """`cells` in the order a grid starts them: the largest students first (grid order among
    equals; a student whose size is not known here counts as largest), so the grid's last trials
    are its shortest and no trial slot idles long at its end (longest processing time first).
    Needs no data: it runs on resume too. The order changes no result."""
    sizes = {s.name: student_architecture(s, spec) for s in spec.students}

    def size(cell: Cell) -> float:
        architecture = sizes.get(cell.student.name)
        return math.inf if architecture is None else architecture.parameters

    return sorted(cells, key=lambda cell: -size(cell))


def check_fit(spec: StudySpec, cluster: ClusterConfig | None = None) -> None:
    """Before anything starts: a GPU study's cells must each fit a node type of `cluster` (default:
    some listed GPU). CPU studies are not checked."""
    if spec.resources.gpus_per_worker > 0:
        require_fit(plan_study(spec, cluster or any_gpu_cluster()))


# --- printing ------------------------------------------------------------------------------------

COLUMNS = (f"  {'student':<16} {'params':>7} {'cells':>5} {'GB/GPU':>7} {'states':>7} {'acts':>6} {'logits':>6}  "
           f"{'runs on':<18} {'Mtokens':>8} {'PFLOP':>8} {'GPU-h':>7} {'eval-h':>7} {'kept GB':>8}")


def _fixed(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _where(plans: list[CellPlan]) -> str:
    """The node types the group's cells run on, and how many of them fit none."""
    if plans[0].gpus_per_trial == 0:
        return "CPU"
    nodes = sorted({p.node.name if p.node.name == p.node.gpu else f"{p.node.name} ({p.node.gpu})"
                    for p in plans if p.node is not None})
    refused = sum(1 for p in plans if p.refusal is not None)
    return ", ".join(nodes + ([f"{refused} NO FIT"] if refused else [])) or "-"


def _row(student: str, plans: list[CellPlan]) -> str:
    worst = max(plans, key=lambda p: p.memory_per_gpu_gb or 0.0)
    params = "?" if worst.architecture is None else f"{worst.architecture.parameters / 1e9:.2f}B"
    head = f"  {student:<16} {params:>7} {len(plans):>5}"
    if worst.memory is None:
        why = "size unknown (not in study/core/architectures.py, no local config.json)" if worst.architecture is None \
            else "corpus generated at run time: its lengths are unknown"
        return f"{head}  not planned: {why}"
    memory = worst.memory
    states = memory.weights + memory.gradients + memory.optimizer + memory.gathered
    eval_s = _sum([p.eval_s for p in plans])
    return (f"{head} {worst.memory_per_gpu_gb:>7.1f} {_fixed(states, 2**30):>7} {_fixed(memory.activations, 2**30):>6} "
            f"{_fixed(memory.logits, 2**30):>6}  {_where(plans):<18} {_fixed(_sum([p.train_tokens for p in plans]), 1e6):>8} "
            f"{_fixed(_sum([p.train_flops for p in plans]), 1e15):>8} {_fixed(_sum([p.gpu_hours for p in plans]), 1, 2):>7} "
            f"{_fixed(eval_s, 3600, 2):>7} {_fixed(_sum([p.final_bytes for p in plans]), 2**30):>8}")


def _layout(spec: StudySpec) -> str:
    resources, train = spec.resources, spec.training
    parts = [f"{resources.workers_per_trial} worker(s) x {resources.gpus_per_worker:g} GPU",
             "LoRA" if train.finetune == "lora" else "full fine-tuning"]
    if resources.workers_per_trial > 1:
        parts.append(resources.sharding.upper())
    if resources.activation_checkpointing:
        parts.append("activation checkpointing")
    return ", ".join(parts)


def print_plan(spec: StudySpec, plan: StudyPlan) -> None:
    source = plan.cluster.source if plan.cluster else "no cluster"
    print(f"\nmemory and cost ({source}; {_layout(spec)}; MFU {plan.mfu:.3f}"
          f"{f', measured: {MFU_SOURCE}' if plan.mfu in MEASURED_MFU.values() else ', from --mfu'}):")
    print("  GB/GPU: peak per GPU = states (weights, gradients, AdamW, bf16 copies or gathered shards) + activations "
          "+ logits;\n  eval-h: decoding at the GPU's memory bandwidth (a lower bound); kept GB: the final students")
    by_dataset: dict[str, dict[str, list[CellPlan]]] = defaultdict(lambda: defaultdict(list))
    for cell in plan.cells:
        by_dataset[cell.cell.corpus.dataset.name][cell.cell.student.name].append(cell)
    for dataset, students in by_dataset.items():
        print(f"\n{dataset} ({sum(len(p) for p in students.values())} cells)\n{COLUMNS}")
        for student, plans in students.items():
            print(_row(student, plans))
    _print_totals(plan)


def _print_totals(plan: StudyPlan) -> None:
    hours = plan.gpu_hours()
    kept, running = plan.storage_bytes()
    print(f"\ntotal: {len(plan.cells)} cells")
    if hours:
        serial = sum(c.wall_s or 0.0 for c in plan.cells) / 3600
        print(f"  GPU-hours {hours:,.1f} (training and evaluation); wall time {plan.wall_hours():,.1f} h on the "
              f"cluster's maximum workers, {serial:,.1f} h one cell at a time")
        usd = plan.usd()
        print(f"  dollars ${usd:,.0f}" if usd is not None else
              "  dollars: no prices (cluster file: metadata.cotstudy.node_types.<type>.usd_per_hour; or the spec's "
              "resources.usd_per_gpu_hour)")
    print(f"  storage: {kept / 2**30:,.1f} GB of final students (fp32) once every cell is done; a running cell adds up "
          f"to {running / 2**30:,.1f} GB of optimizer state, deleted when its result.json is written")
    refused = {}
    for cell in plan.cells:  # one line per student and data set: its cells need about the same
        if cell.refusal is not None:
            refused.setdefault((cell.cell.corpus.dataset.name, cell.cell.student.name), cell.refusal)
    if refused:
        print(f"\nrefused: {sum(1 for c in plan.cells if c.refusal)} cells fit no node type (first of each student):")
        for line in refused.values():
            print(f"  {line}")
