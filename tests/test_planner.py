"""The planner: students' sizes without downloads, the memory model against measured steps and
published figures, cluster files, and `cotstudy plan` / `run` refusing cells that fit nowhere."""

import random

import pytest
import torch
import yaml
from conftest import REPO, small_spec, write_spec
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, get_scheduler

from study.core.architectures import HUB_ARCHITECTURES, architecture_of_tiny
from study.core.footprint import MicroBatch, TrainLayout, estimate_memory
from study.core.cluster import ClusterConfigError, load_cluster
from study.core.spec import LoraSettings, TinyArch
from study.run.cli import main
from trainables.accounting import flop_count
from trainables.data import IGNORE_INDEX, Example
from trainables.lora import with_lora
from trainables.packing import PackingPlan, step_micro_batches
from trainables.step import TargetLoss, train_step

# what each model's own config builds in transformers, as its model card gives it
PUBLISHED = {"bigscience/bloom-560m": 559_214_592, "bigscience/bloom-3b": 3_002_557_440,
             "google/gemma-2b": 2_506_172_416, "meta-llama/Llama-3.2-1B": 1_235_814_400,
             "meta-llama/Llama-3.2-3B": 3_212_749_824, "Qwen/Qwen2.5-0.5B": 494_032_768}
MODEL_TYPES = {"llama": "llama", "gemma": "gemma", "bloom": "bloom"}


def _transformers_config(arch):
    if arch.family == "bloom":
        return AutoConfig.for_model("bloom", vocab_size=arch.vocab_size, hidden_size=arch.hidden, n_layer=arch.layers,
                                    n_head=arch.heads)
    model_type = "qwen2" if arch.qkv_bias else arch.family
    return AutoConfig.for_model(model_type, vocab_size=arch.vocab_size, hidden_size=arch.hidden,
                                num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
                                num_key_value_heads=arch.kv_heads, head_dim=arch.head_dim,
                                intermediate_size=arch.intermediate, tie_word_embeddings=True)


@pytest.mark.parametrize("hf_id", sorted(set(HUB_ARCHITECTURES) & set(PUBLISHED)) + ["bigscience/bloom-1b7",
                                                                                     "Qwen/Qwen2.5-1.5B"])
def test_hub_students_are_sized_as_transformers_builds_them(hf_id):
    """Built on the meta device (no weights, no download): parameters, and FLOPs as the trainer
    counts them (trainables.accounting) on the real module tree."""
    arch = HUB_ARCHITECTURES[hf_id]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_transformers_config(arch))
    assert arch.parameters == sum(p.numel() for p in model.parameters()) == PUBLISHED.get(hf_id, arch.parameters)
    assert arch.flop_count() == flop_count(model)


def _examples(n: int, vocab: int) -> list[Example]:
    rng = random.Random(0)
    examples = []
    for _ in range(n):
        prompt, target = rng.randint(10, 40), rng.randint(20, 120)
        ids = [rng.randrange(3, vocab) for _ in range(prompt + target)]
        examples.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def _measured_step_bytes(model, micro_batches) -> int:
    """Peak bytes torch allocates during a training step (the second: AdamW's moments exist), above
    what was allocated before it: the profiler's allocation records, summed in time order."""
    loss_module = TargetLoss(model)
    optimizer = torch.optim.AdamW([p for p in loss_module.parameters() if p.requires_grad], lr=1e-3)
    scheduler = get_scheduler("constant", optimizer)
    train_step(loss_module, optimizer, scheduler, micro_batches, 1)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiled:
        train_step(loss_module, optimizer, scheduler, micro_batches, 1)
    records = sorted((e.start_ns(), e.nbytes()) for e in profiled.profiler.kineto_results.events()
                     if e.name() == "[memory]")
    live = peak = 0
    for _, change in records:
        live += change
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("layout", ["full", "activation checkpointing", "lora"])
def test_the_memory_model_is_within_25_percent_of_a_measured_cpu_step(layout):
    """A tiny student's real training step (the trainer's packing, loss and AdamW), one worker on
    the CPU. Weights and moments exist before the step, so the step adds the rest: gradients,
    activations, logits; the estimate of that must be within 25% (measured 0.86x-1.10x)."""
    arch_spec, vocab = TinyArch(layers=2, width=64, heads=4), 500
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True))
    lora_rank = 8 if layout == "lora" else None
    if lora_rank:
        model = with_lora(model, LoraSettings(rank=lora_rank), "s")
    if layout == "activation checkpointing":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    micro_batches = step_micro_batches(_examples(60, vocab), PackingPlan(packing=True), 0, None)
    measured = _measured_step_bytes(model, micro_batches)
    planned = TrainLayout("cpu", activation_checkpointing=layout == "activation checkpointing", lora_rank=lora_rank)
    arch = architecture_of_tiny(arch_spec, vocab)
    peaks = [estimate_memory(arch, planned, MicroBatch(*b["input_ids"].shape, int((b["target_ids"] != IGNORE_INDEX).sum()),
                                                       len(micro_batches))) for b in micro_batches]
    estimate = max(peak.total - peak.weights - peak.optimizer for peak in peaks)
    assert 0.75 < estimate / measured < 1.25, (layout, estimate / 2**20, measured / 2**20)


def test_the_memory_model_matches_published_and_measured_large_model_figures():
    """Per parameter, before activations: 18 bytes on one GPU (fp32 weights 4, gradients 4, AdamW 8,
    autocast's bf16 copies 2: Hugging Face's "model training anatomy" for mixed precision), 16 in
    fp32 on a CPU (ZeRO's 16 bytes counts 2 + 2 + 12 for fp16 weights over fp32 masters; the same
    sum). And bench/train_throughput.py's measured H100 peak: a LLaMA-3.2-1B shape, 16k-token
    micro-batches in rows of 512, two per step, 65.7 GB (varlen, uncompiled); the estimate over
    a 50-80% target share (SVAMP CoT) must bracket it within 10%."""
    llama = HUB_ARCHITECTURES["meta-llama/Llama-3.2-1B"]
    empty = MicroBatch(rows=0, row_length=0, targets=0, per_step=2)
    gpu = estimate_memory(llama, TrainLayout("cuda"), empty)
    assert gpu.total / llama.parameters == pytest.approx(18, abs=0.05)
    assert estimate_memory(llama, TrainLayout("cpu"), empty).total / llama.parameters == pytest.approx(16, abs=0.05)
    sharded = estimate_memory(llama, TrainLayout("cuda", workers=8, sharding="fsdp"), empty)
    assert (sharded.weights + sharded.gradients + sharded.optimizer) / llama.parameters == pytest.approx(2.0)
    estimates = [estimate_memory(llama, TrainLayout("cuda"), MicroBatch(32, 512, int(16384 * share), 2)).total_gb()
                 for share in (0.5, 0.8)]
    assert 65.7 * 0.9 < estimates[0] <= 65.7 <= estimates[1] < 65.7 * 1.1, estimates


def test_cluster_yaml_names_each_gpu_node_types_gpu_and_price():
    cluster = load_cluster(REPO / "cluster.yaml")
    nodes = {node.name: node for node in cluster.node_types}
    assert (nodes["gpu-1x"].gpu, nodes["gpu-1x"].gpus, nodes["gpu-1x"].cpus) == ("a10g", 1, 4)
    assert (nodes["gpu-8x"].gpu, nodes["gpu-8x"].gpus) == ("a100-80", 8)
    assert cluster.head_usd_per_hour is not None and all(n.usd_per_hour for n in nodes.values())


def test_a_cluster_file_without_a_gpu_kind_is_one_clear_error(tmp_path):
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    del config["metadata"]["cotstudy"]["node_types"]["gpu-8x"]["gpu"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=r"metadata.cotstudy.node_types.gpu-8x.gpu: .* 8 GPUs"):
        load_cluster(tmp_path / "c.yaml").require_gpu_kinds()  # placement needs no GPU kind; sizing memory does
    config["metadata"]["cotstudy"]["node_types"]["gpu-2x"] = {"gpu": "l4"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=r"\['gpu-2x'\] are not in available_node_types"):
        load_cluster(tmp_path / "c.yaml")


def _gpu_spec(tmp_path, student: dict, **resources) -> str:
    return str(write_spec(tmp_path / "spec.yaml", small_spec(
        tmp_path / "out", students=[student], resources={"gpus_per_worker": 1, **resources})))


def test_plan_prints_memory_cost_and_storage_and_prices_gpu_hours(tmp_path, capsys):
    spec = _gpu_spec(tmp_path, {"name": "s", "tiny": {"layers": 2, "width": 64, "heads": 2}}, usd_per_gpu_hour=2.0)
    assert main(["plan", spec, "--gpu", "l4"]) == 0
    out = capsys.readouterr().out
    assert "memory and cost (--gpu l4; 1 worker(s) x 1 GPU, full fine-tuning; MFU 0.279" in out
    assert "GPU-hours" in out and "dollars $" in out and "GB of final students" in out and "refused" not in out


def test_plan_and_run_refuse_a_cell_that_fits_no_node_type_naming_the_fixes(tmp_path, capsys):
    spec = _gpu_spec(tmp_path, {"name": "big", "hf_id": "meta-llama/Llama-3.2-1B"})
    assert main(["plan", spec, "--gpu", "a10g"]) == 2
    out = capsys.readouterr().out
    assert "fits no node type of --gpu a10g" in out
    for fix in ("training.finetune: lora", "resources.workers_per_trial: ", "with sharding: fsdp", "a node type with"):
        assert fix in out, fix
    assert main(["run", spec, "--gpu", "a10g"]) == 2  # before the hub is asked or anything is written
    assert "fits no node type of --gpu a10g" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["plan", spec, "--gpu", "h100"]) == 0


def test_a_grid_starts_its_largest_students_first_and_keeps_grid_order_among_equals(tmp_path):
    from study.core.cells import expand_grid
    from study.core.spec import parse_spec
    from study.run.planning import largest_students_first

    students = [{"name": "small", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                {"name": "big", "tiny": {"layers": 2, "width": 64, "heads": 4}},
                {"name": "unknown", "hf_id": "someone/not-in-the-table"}]
    spec = parse_spec(small_spec(tmp_path, students=students))
    cells = expand_grid(spec)
    ordered = largest_students_first(spec, cells)
    assert [c.student.name for c in ordered] == ["unknown"] * 2 + ["big"] * 2 + ["small"] * 2
    for name in ("unknown", "big", "small"):  # each student's cells in grid order
        assert [c for c in ordered if c.student.name == name] == [c for c in cells if c.student.name == name]
