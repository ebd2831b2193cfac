"""Training throughput: our step loop (on a CPU length-grouped rows, one document per row with
no mask; on a GPU rows packed at a fixed length with varlen attention; the LM head only at target
tokens; per-token loss over the step; fused AdamW) against a transformers `Trainer` set up like LLaMA-Factory (padding to the longest in
the batch, to a multiple of 8; per-device batch 4; gradient accumulation 4; bf16 autocast on GPU;
the Trainer's default fused AdamW; no gradient checkpointing, which LLaMA-Factory turns on by
default and which would make the baseline slower still). Same student (same initial weights),
same examples, same device, both in one run; tokens/s counts non-padding tokens only, after the
warm-up steps.

An A/B benchmark in rounds (`--rounds`, default 3 on CPU, 1 on GPU): each round runs ours, then
the Trainer (A B A B ...), each from the same initial weights (same seed) on the same examples in
the same order. Each run trains on, pass after pass over the examples (ours reshuffles pass p with
seed p; the Trainer runs more epochs), and stops at the end of the first optimizer step where it
has done at least one whole pass and its timed window (after the warm-up steps, which stay out for
both) is at least `--min-seconds` (default 30 on CPU, 0 on GPU: one pass). Tokens count over the
whole timed window. One short run of each path (about 6-8 s) swung from 1.30x to 1.60x with the
machine's load; the median over rounds of at least 30 s each is the figure to quote. With several `--attention`
values, each round runs each of ours in turn, then the Trainer.

Corpus: the paper's released SVAMP CoT, all levels of every teacher mixed
(`SVAMP_*_level*_ranked.json`: instruction = question, output = rationale), encoded exactly as
a study encodes it (prompt masked, rationale + EOS as targets), with a BPE tokenizer trained on
the fly on the corpus (trainables/tokenizer.py).

CPU, a tiny student (2 layers, width 64; one torch thread, as a study's trials use; 3 rounds of
two runs of at least 30 s each, so some 4 minutes; needs `pip install accelerate` for the Trainer):
    python bench/train_throughput.py --data ../shared/data/svamp/cot [--compile]
(`--compile`: each decoder layer compiled with dynamic shapes, as `resources.compile: true`
does; length groups have at least two rows, so the first step's graph is the only one and its
compile stays in the warm-up steps. Needs a C++ compiler.)
(`--rounds 2 --min-seconds 5 --examples 300` is a quick check that it runs, not a measurement.)

GPU, a LLaMA-3.2-1B-shaped student (random weights; hidden 2048, 16 layers, 32 heads, 8 kv heads,
MLP 8192, vocab 128256, tied embeddings; 1.24B parameters), bf16 autocast over fp32 master
weights, fused AdamW, flash-attention varlen through torch.nn.attention.varlen (torch >= 2.11),
rows of 512, 32k-token steps of two 16k-token micro-batches, each decoder layer compiled:
    python bench/train_throughput.py --data DIR --device cuda --compile
(add `--attention varlen sdpa` to also time the sdpa + position-ids path, `--profile` for a
kernel table of one step). ../shared/data does not travel to a GPU machine: copy the folder.

MFU counts the FLOPs the documents need, on non-padding tokens only: 6 x matmul parameters per
token (the tied LM head's only at target tokens, where it is needed, for both runs), plus causal
attention inside each document, 6 x layers x hidden x length^2; peak: H100 dense bf16, 989 TFLOP/s.
It prints a table of every round's runs (tokens/s and the ratio to the same round's Trainer; on
CPU also per CPU-second of the process), the median ratio over rounds (with min and max), the
machine's CPU count and 1-minute load average at start and end, then one JSON line with every
run's figures (all rounds), the per-round ratios and their median. The LAST line is `ratio X.XX`:
the median over rounds of ours (the first `--attention` listed) / the Trainer, in tokens/s. With
`--skip-baseline`, or when no round has both runs, there is no `ratio` line.

Measured 2026-12-07 with length-grouped rows and fused AdamW (this 2-core machine, idle but for
the bench, load average 1.00 at start and end of each run; 3 rounds, each path timed for at
least 30 s, A B A B A B):
    python bench/train_throughput.py --compile     ours 29,084 / 28,765 / 30,869 tokens/s against
        the Trainer's 13,942 / 14,966 / 14,606: 2.09x / 1.92x / 2.11x, median 2.09x
        (an earlier run, before fused AdamW: 2.03x / 1.82x / 2.00x, median 2.00x)
    python bench/train_throughput.py --compile --rounds 5   (load 0.85 at start, 1.00 at end)
        ours 35,265 / 32,237 / 32,029 / 32,161 / 33,518 against 15,572 / 14,791 / 15,299 /
        15,377 / 15,171: 2.26x / 2.18x / 2.09x / 2.09x / 2.21x, median 2.18x; no recompile in
        the timed window (TORCH_LOGS=recompiles)
    python bench/train_throughput.py               ours 24,240 / 27,119 / 27,447 against
        15,554 / 16,708 / 16,996: 1.56x / 1.62x / 1.61x, median 1.61x
On a CPU, compiling pays once rows carry no document mask: each layer's graph takes dynamic row
counts and lengths, compiles in the first step (some 10-20 s, in the warm-up) and fuses the
norms, rotary embeddings and activations (1.1-1.2x eager here). Tried and dropped on this
student: bf16 autocast (slower: casts), bf16 matmul products (`torch.set_float32_matmul_precision
("medium")`, oneDNN on AMX: 0.71x the Trainer, as each new matmul shape builds a kernel), flex
attention (no backward on CPU), compiled math attention (2-3x slower than sdpa's flash kernel).
Before length-grouped rows (packed rows of the step's longest example and half that, with a
document mask; 2026-12-07, load 1.98 at start, 1.04 at end): 1.49x / 1.61x / 1.50x, median 1.50x.
The figures below predate `--rounds` and `--min-seconds` (one run of each path, one pass over
the examples).

Measured 2026-11-24. CPU (this 2-core machine, shared and loaded, one torch thread, 1500
examples, 169k timed tokens): three runs gave ours 20,737 / 15,967 / 7,412 tokens/s against the
Trainer's 12,112 / 10,899 / 4,908, ratios 1.71x / 1.47x / 1.51x (per CPU-second of the process:
1.63x / 1.46x / 1.68x); with one row length (the step's longest) it was 1.38x (1.44x).
Again on an idle machine, after the trainer moved to trainables/parallel.py (session 3): 21,355 and
21,445 tokens/s against 13,374 and 13,365: 1.60x and 1.60x. With `--compile` on CPU: 4,250 against
12,267 tokens/s (0.35x): row lengths change every step, so the layers recompile inside the timed
window; compile is for a GPU with fixed rows (`pack_length`).
GPU (one run each; NVIDIA H100 80GB HBM3, torch 2.11, transformers 5.17,
3000 examples, 3 warm-up steps left out; ours timed over 6 steps, 182k tokens):
    ours (varlen, compiled, rows of 512)   59,545 tokens/s  40.7% MFU  53.7 GB peak  13.4x
    transformers Trainer (LLaMA-Factory)    4,456 tokens/s   3.0% MFU  25.5 GB peak   1.0x
  and without torch.compile (4000 examples, same run as its baseline: 4,562 tokens/s, 3.1%):
    ours (varlen)                           40,784 tokens/s  27.9% MFU  65.7 GB peak   8.9x
    ours (sdpa, position ids)               39,062 tokens/s  26.7% MFU  66.0 GB peak   8.6x
  a longer window, compiled, no baseline (9000 examples, 24 timed steps, 760k tokens):
    ours (varlen, compiled, rows of 512)   60,035 tokens/s  41.1% MFU  54.0 GB peak
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.core.datasets import question_prompt, training_text  # noqa: E402
from study.core.hardware import GPUS  # noqa: E402
from trainables.accounting import flop_count  # noqa: E402
from trainables.data import Example, batch_indices, encode_example  # noqa: E402
from trainables.packing import PackingPlan, flatten_for_varlen, step_micro_batches, use_varlen_attention  # noqa: E402
from trainables.parallel import prepare_layers  # noqa: E402
from trainables.step import TargetLoss, target_count, train_step  # noqa: E402
from trainables.tokenizer import train_tokenizer  # noqa: E402

H100_BF16_PEAK_FLOPS = GPUS["h100"].bf16_flops
LLAMA_32_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                   intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=256,
            tie_word_embeddings=True)
MAX_PASSES = 1000  # the Trainer's num_train_epochs when --min-seconds asks for more than one pass; it stops earlier


@dataclass
class Run:
    name: str
    tokens: int  # non-padding tokens in the timed steps
    seconds: float
    flops: float  # model FLOPs of those tokens
    steps: int  # timed optimizer steps
    peak_memory_gb: float | None
    cpu_seconds: float  # this process's CPU time over the timed steps (the machine may be shared)
    passes: float = 0.0  # passes over the examples, warm-up steps included
    parameters: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def mfu(self, peak: float) -> float:
        return self.flops / self.seconds / peak


@dataclass
class Round:
    """One A/B round: each of ours (by attention) then the baseline, each from the same initial weights."""
    number: int
    ours: dict[str, Run] = field(default_factory=dict)
    baseline: Run | None = None

    @property
    def runs(self) -> list[Run]:
        """The round's runs in the order they ran: ours, then the baseline."""
        return [*self.ours.values(), *([self.baseline] if self.baseline else [])]

    def ratio(self, attention: str) -> float | None:
        run = self.ours.get(attention)
        return run.tokens_per_s / self.baseline.tokens_per_s if run and self.baseline else None


def load_corpus(folder: Path, n_examples: int, seed: int) -> list[tuple[str, str]]:
    files = sorted(folder.glob("SVAMP_*_level*_ranked.json"))
    if not files:
        raise SystemExit(f"no SVAMP_*_level*_ranked.json under {folder}")
    rows = [(item["instruction"], item["output"]) for path in files for item in json.loads(path.read_text())]
    random.Random(seed).shuffle(rows)
    print(f"corpus: {len(rows)} rows from {len(files)} files; using {min(n_examples, len(rows))}", flush=True)
    return rows[:n_examples]


def build_model(shape: dict, tokenizer, device: str, seed: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{"vocab_size": len(tokenizer), **shape}, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def window_done(passes: float, started: float, min_seconds: float) -> bool:
    """Both paths stop at the end of the first optimizer step where at least one whole pass over the
    examples is done (warm-up included) and the timed window is at least min_seconds."""
    return passes >= 1.0 and time.perf_counter() - started >= min_seconds


def our_steps(examples: list[Example], tokens_per_step: int) -> Iterator[tuple[float, list[int]]]:
    """Our steps, pass after pass over the examples (pass p shuffled with seed p), each with the number
    of passes done once it is taken."""
    for number in itertools.count():
        steps = batch_indices(examples, tokens_per_step, seed=number, packed=True)
        for index, indices in enumerate(steps):
            yield number + (index + 1) / len(steps), indices


def run_ours(model: torch.nn.Module, examples: list[Example], pad_id: int, args: argparse.Namespace,
             attention: str, profile: bool) -> Run:
    device = args.device
    plan = PackingPlan(packing=True, pack_length=args.pack_length)
    if attention == "varlen":
        use_varlen_attention(model)
    prepare_layers(model, activation_checkpointing=False, compile_layers=args.compile)  # as the trainer does
    loss_module = TargetLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the trainer does
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    autocast = torch.bfloat16 if device == "cuda" else None
    count_flops = flop_count(model)
    tokens, flops, passes = 0, 0.0, 0.0
    started = cpu_started = 0.0
    for number, (passes, indices) in enumerate(our_steps(examples, args.tokens_per_step)):
        if number == args.warmup_steps:
            sync(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            tokens, flops = 0, 0.0
        chosen = [examples[i] for i in indices]
        micro_batches = step_micro_batches(chosen, plan, pad_id, args.micro_batch_tokens)
        if attention == "varlen":
            micro_batches = [flatten_for_varlen(b, plan.row_length(chosen)) for b in micro_batches]
        profiling = profile and number == args.warmup_steps
        with torch.profiler.profile() if profiling else contextlib.nullcontext() as profiler:
            loss = train_step(loss_module, optimizer, scheduler, micro_batches, world=1, device=device,
                              autocast_dtype=autocast)
        if profiling:
            sort = "cuda_time_total" if device == "cuda" else "cpu_time_total"
            print(profiler.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60), flush=True)
        lengths = [len(e.input_ids) for e in chosen]
        tokens += sum(lengths)
        flops += count_flops(lengths, sum(target_count(b) for b in micro_batches))
        if number % 10 == 0:
            print(f"  ours/{attention} step {number} (pass {passes:.2f}) loss {loss:.3f}", flush=True)
        if number >= args.warmup_steps and window_done(passes, started, args.min_seconds):
            break
    sync(device)
    rows = f"rows of {args.pack_length}" if args.pack_length else "length-grouped rows"
    name = f"ours ({attention}{', compiled' if args.compile else ''}, {rows})"
    return Run(name, tokens, time.perf_counter() - started, flops, number + 1 - args.warmup_steps, peak_memory(device),
               time.process_time() - cpu_started, passes, sum(p.numel() for p in model.parameters()))


def run_trainer_baseline(model: torch.nn.Module, examples: list[Example], tokenizer, args: argparse.Namespace) -> Run:
    """transformers Trainer as LLaMA-Factory runs SFT: padded to the longest in each batch of 4."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    device = args.device
    count_flops = flop_count(model)
    counted = {"tokens": 0, "flops": 0.0}
    timing: dict[str, float] = {}

    def count(module, positional, keyword):  # every training forward: its non-padding tokens
        if module.training:
            lengths = keyword["attention_mask"].sum(dim=1).tolist()
            counted["tokens"] += sum(lengths)
            counted["flops"] += count_flops(lengths, int((keyword["labels"] != -100).sum()))

    def read_clock(at: str) -> None:
        sync(device)
        timing[at], timing[f"cpu_{at}"] = time.perf_counter(), time.process_time()
        timing[f"tokens_{at}"], timing[f"flops_{at}"] = counted["tokens"], counted["flops"]

    class Clock(TrainerCallback):
        def on_train_begin(self, arguments, state, control, **kwargs):
            if args.warmup_steps == 0:
                read_clock("start")

        def on_step_end(self, arguments, state, control, **kwargs):
            if state.global_step == args.warmup_steps:
                read_clock("start")
            elif "start" in timing and window_done(state.epoch, timing["start"], args.min_seconds):
                read_clock("end")
                timing["steps"], timing["passes"] = state.global_step - args.warmup_steps, state.epoch
                control.should_training_stop = True

    model.register_forward_pre_hook(count, with_kwargs=True)
    dataset = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels} for e in examples]
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=4, gradient_accumulation_steps=4,
            num_train_epochs=1 if args.min_seconds <= 0 else MAX_PASSES,
            learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0.1, bf16=device == "cuda",
            use_cpu=device == "cpu", save_strategy="no", report_to=[], logging_steps=50, disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0, seed=0,
        )
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=collator, callbacks=[Clock()])
        trainer.train()
    if "end" not in timing:
        raise RuntimeError(f"the Trainer stopped before its timed window closed (after {args.warmup_steps} warm-up steps)")
    return Run("transformers Trainer (LLaMA-Factory setup)", int(timing["tokens_end"] - timing["tokens_start"]),
               timing["end"] - timing["start"], timing["flops_end"] - timing["flops_start"], int(timing["steps"]),
               peak_memory(device), timing["cpu_end"] - timing["cpu_start"], timing["passes"],
               sum(p.numel() for p in model.parameters()))


def peak_memory(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def encode(rows: list[tuple[str, str]], tokenizer, max_length: int) -> list[Example]:
    examples = [encode_example(tokenizer, question_prompt("svamp", q), r) for q, r in rows]
    kept = [e for e in examples if len(e.input_ids) <= max_length]
    print(f"examples: {len(kept)} kept, {len(examples) - len(kept)} longer than {max_length} dropped; "
          f"mean {sum(len(e.input_ids) for e in kept) / len(kept):.0f} tokens, longest {max(len(e.input_ids) for e in kept)}",
          flush=True)
    return kept


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/svamp/cot",
                        help="folder of SVAMP_*_level*_ranked.json")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--examples", type=int, help="examples used by both (default: cpu 1500, cuda 3000)")
    parser.add_argument("--vocab-size", type=int, help="BPE vocabulary trained on the corpus (default: cpu 1024, cuda 8192)")
    parser.add_argument("--tokens-per-step", type=int, help="our optimizer step, document tokens (default: cpu 4096, cuda 32768)")
    parser.add_argument("--micro-batch-tokens", type=int, help="our forward pass, rows x row length (default: cpu none, cuda 16384)")
    parser.add_argument("--pack-length", type=int,
                        help="our row length (default: cpu each step's longest example, rounded up to 8; cuda 512, one shape to compile)")
    parser.add_argument("--attention", nargs="+", choices=["sdpa", "varlen"],
                        help="ours, each in turn every round (default: cpu sdpa, cuda varlen); the last line's ratio is the first's")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--warmup-steps", type=int, default=3, help="optimizer steps left out of the timing, each run")
    parser.add_argument("--rounds", type=int,
                        help="A/B rounds, each ours then the baseline from the same initial weights (default: cpu 3, cuda 1)")
    parser.add_argument("--min-seconds", type=float,
                        help="each run trains on (more passes over the examples) until its timed window, after the "
                             "warm-up steps, is at least this long; at least one whole pass (default: cpu 30, cuda 0)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1, as a study's trials use)")
    parser.add_argument("--skip-baseline", action="store_true", help="ours only: no ratios, no `ratio` line")
    parser.add_argument("--profile", action="store_true", help="print a profile of our first timed step, first round (slows it)")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    defaults = {"examples": (1500, 3000), "vocab_size": (1024, 8192), "tokens_per_step": (4096, 32768),
                "micro_batch_tokens": (None, 16384), "pack_length": (None, 512), "attention": (["sdpa"], ["varlen"]),
                "rounds": (3, 1), "min_seconds": (30.0, 0.0)}
    for name, (cpu_value, gpu_value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, gpu_value if gpu else cpu_value)
    return args


def time_ours(attention: str, round_number: int, shape: dict, tokenizer, examples: list[Example],
              args: argparse.Namespace, failed: dict[str, str]) -> Run | None:
    return timed(f"ours with {attention} attention", f"round {round_number + 1} ours ({attention})", round_number,
                 lambda model: run_ours(model, examples, tokenizer.pad_token_id, args, attention,
                                        args.profile and round_number == 0),
                 shape, tokenizer, args, failed)


def time_baseline(round_number: int, shape: dict, tokenizer, examples: list[Example], args: argparse.Namespace,
                  failed: dict[str, str]) -> Run | None:
    return timed("transformers Trainer", f"round {round_number + 1} baseline", round_number,
                 lambda model: run_trainer_baseline(model, examples, tokenizer, args), shape, tokenizer, args, failed)


def timed(label: str, failure_key: str, round_number: int, measure: Callable[[torch.nn.Module], Run], shape: dict,
          tokenizer, args: argparse.Namespace, failed: dict[str, str]) -> Run | None:
    """One path from fresh initial weights (the same seed every time); a path that fails is recorded
    in `failed`, never as a number, and the other runs still measure."""
    model = build_model(shape, tokenizer, args.device, seed=0)
    print(f"round {round_number + 1}: {label}", flush=True)
    try:
        run = measure(model)
        print(f"  {run.name}: {run.tokens_per_s:,.0f} tokens/s over {run.seconds:.1f}s", flush=True)
        return run
    except Exception as error:  # noqa: BLE001 - the other runs still measure
        traceback.print_exc()
        failed[failure_key] = repr(error)[:300]
        return None
    finally:
        del model
        free_memory(args.device)


def run_round(number: int, shape: dict, tokenizer, examples: list[Example], args: argparse.Namespace,
              failed: dict[str, str]) -> Round:
    """Each of ours in turn, then the baseline (A B), all from the same initial weights on the same examples."""
    result = Round(number)
    for attention in args.attention:
        run = time_ours(attention, number, shape, tokenizer, examples, args, failed)
        if run is not None:
            result.ours[attention] = run
    if not args.skip_baseline:
        result.baseline = time_baseline(number, shape, tokenizer, examples, args, failed)
    return result


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    rows = load_corpus(args.data, args.examples, seed=0)
    started = time.perf_counter()
    tokenizer = train_tokenizer([training_text("svamp", q, r) for q, r in rows], args.vocab_size)
    print(f"tokenizer: {len(tokenizer)} tokens in {time.perf_counter() - started:.1f}s", flush=True)
    examples = encode(rows, tokenizer, args.max_length)
    shape = LLAMA_32_1B if args.device == "cuda" else TINY
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    failed: dict[str, str] = {}  # a run that fails is reported as failed, never as a number
    rounds = [run_round(number, shape, tokenizer, examples, args, failed) for number in range(args.rounds)]
    report(rounds, args, device_name, failed, (load_start, os.getloadavg()[0]))


def free_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_line(run: Run, number: int, baseline: Run | None, gpu: bool) -> str:
    ratio = run.tokens_per_s / baseline.tokens_per_s if baseline else float("nan")
    line = (f"{number + 1:>5} {run.name:58} {run.tokens:>10,} {run.seconds:>8.1f} {run.passes:>6.1f} "
            f"{run.tokens_per_s:>10,.0f} {ratio:>7.2f}x")
    if gpu:
        return line + f" {run.mfu(H100_BF16_PEAK_FLOPS):>6.1%} {run.peak_memory_gb:>8.1f}"
    per_cpu_s = run.tokens / run.cpu_seconds
    cpu_ratio = per_cpu_s / (baseline.tokens / baseline.cpu_seconds) if baseline else float("nan")
    return line + f" {per_cpu_s:>10,.0f} {cpu_ratio:>7.2f}x"


def print_table(rounds: list[Round], gpu: bool) -> None:
    header = (f"{'round':>5} {'run':58} {'tokens':>10} {'seconds':>8} {'passes':>6} {'tokens/s':>10} {'vs base':>8}"
              + (f" {'MFU':>6} {'peak GB':>8}" if gpu else f" {'tok/cpu-s':>10} {'vs base':>8}"))
    print(header)
    for one in rounds:
        for run in one.runs:
            print(run_line(run, one.number, one.baseline, gpu))


def ratio_summary(rounds: list[Round], attention: str) -> dict[str, float | list[float] | None]:
    ratios = [r for r in (one.ratio(attention) for one in rounds) if r is not None]
    if not ratios:
        return {"ratios": [], "median": None, "min": None, "max": None}
    return {"ratios": ratios, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def run_record(run: Run, number: int, baseline: Run | None, gpu: bool) -> dict:
    return {"round": number + 1, **asdict(run), "tokens_per_s": run.tokens_per_s,
            "tokens_per_cpu_s": run.tokens / run.cpu_seconds if run.cpu_seconds else None,
            "mfu": run.mfu(H100_BF16_PEAK_FLOPS) if gpu else None,
            "ratio_vs_baseline": run.tokens_per_s / baseline.tokens_per_s if baseline else None}


def report(rounds: list[Round], args: argparse.Namespace, device_name: str, failed: dict[str, str],
           load: tuple[float, float]) -> None:
    gpu = args.device == "cuda"
    runs = [(one, run) for one in rounds for run in one.runs]
    n_params = runs[0][1].parameters if runs else 0
    print(f"\ndevice: {device_name}; student {n_params / 1e6:.1f}M parameters; ours: {args.tokens_per_step} tokens/step, "
          f"micro-batches of {args.micro_batch_tokens}; baseline: batch 4 x accumulation 4, padded; "
          f"{args.rounds} rounds, each run timed for at least {args.min_seconds:g}s after {args.warmup_steps} warm-up steps")
    print_table(rounds, gpu)
    for name, error in failed.items():
        print(f"{name:58} FAILED: {error[:200]}")
    summaries = {attention: ratio_summary(rounds, attention) for attention in args.attention}
    for attention, summary in summaries.items():
        if summary["median"] is not None:
            print(f"ours ({attention}) / baseline over {len(summary['ratios'])} rounds: median {summary['median']:.2f}x "
                  f"(min {summary['min']:.2f}x, max {summary['max']:.2f}x)")
    print(f"machine: {os.cpu_count()} CPUs; 1-minute load average {load[0]:.2f} at start, {load[1]:.2f} at end")
    first = summaries[args.attention[0]]
    if first["median"] is None and not args.skip_baseline:
        print(f"no ratio: no round has both ours ({args.attention[0]}) and the baseline")
    print(json.dumps({
        "failed": failed,
        "device": device_name, "student_params": n_params, "compile": args.compile,
        "tokens_per_step": args.tokens_per_step, "micro_batch_tokens": args.micro_batch_tokens,
        "examples": args.examples, "warmup_steps": args.warmup_steps, "rounds": args.rounds,
        "min_seconds": args.min_seconds, "cpu_count": os.cpu_count(), "load_1min_start": load[0], "load_1min_end": load[1],
        "runs": [run_record(run, one.number, one.baseline, gpu) for one, run in runs],
        "ratios": {attention: summary["ratios"] for attention, summary in summaries.items()},
        "median_ratio": first["median"], "min_ratio": first["min"], "max_ratio": first["max"],
    }), flush=True)
    if first["median"] is not None:
        print(f"ratio {first['median']:.2f}", flush=True)


if __name__ == "__main__":
    main()
